package compiler

// DefaultNamespace is the namespace of an object that names none, unless
// WithDefaultNamespace says otherwise.
const DefaultNamespace = "default"

// options are Parse's settings.
type options struct {
	defaultNamespace string
}

// Option configures Parse.
type Option func(*options)

// WithDefaultNamespace sets the namespace of objects whose
// metadata.namespace is empty. If ns is "", the default is DefaultNamespace.
func WithDefaultNamespace(ns string) Option {
	return func(o *options) {
		if ns != "" {
			o.defaultNamespace = ns
		}
	}
}

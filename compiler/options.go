package compiler

import "github.com/gitmesh/gitmesh/sources"

// DefaultNamespace is the namespace of an object that names none, unless
// WithDefaultNamespace says otherwise.
const DefaultNamespace = "default"

// options are Parse's settings.
type options struct {
	defaultNamespace string
	problems         []sources.Problem
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

// WithProblems adds the per-document problems sources.Build found (bad
// YAML, a document without metadata.name, a duplicate key) to Parse's
// diagnostics, each at its file and line, so that a revision with such a
// document fails validation like any other error while the rest of its
// objects are still checked.
func WithProblems(problems []sources.Problem) Option {
	return func(o *options) { o.problems = append(o.problems, problems...) }
}

package compiler

import (
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// DefaultNamespace is the namespace of an object that names none, unless
// WithDefaultNamespace says otherwise.
const DefaultNamespace = "default"

// DefaultTrustDomain is the SPIFFE trust domain of workload identities
// unless WithTrustDomain says otherwise (Istio's default).
const DefaultTrustDomain = "cluster.local"

// DefaultRootNamespace is the namespace whose PeerAuthentication,
// Telemetry, AuthorizationPolicy and RequestAuthentication without a
// selector apply to the whole mesh, unless WithRootNamespace says
// otherwise (Istio's meshConfig.rootNamespace default).
const DefaultRootNamespace = "istio-system"

// options are Parse's settings.
type options struct {
	defaultNamespace string
	trustDomain      string
	rootNamespace    string
	autoMTLS         bool
	registry         registry.Registry // nil: built from the revision's Kubernetes objects
	problems         []sources.Problem
	security         securityOptions        // WithJWKS, WithJWKSErrors
	cache            *Cache                 // WithCache; nil: nothing cached
	mesh             *meshconfig.MeshConfig // WithMeshConfig; nil: none
	meshSet          bool                   // WithMeshConfig was given: provider names are checked
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

// WithTrustDomain sets the SPIFFE trust domain of workload identities,
// spiffe://<td>/ns/<namespace>/sa/<service account>, which upstream TLS
// contexts expect of the peers they verify. If td is "", the default is
// DefaultTrustDomain.
func WithTrustDomain(td string) Option {
	return func(o *options) {
		if td != "" {
			o.trustDomain = td
		}
	}
}

// WithRootNamespace sets the namespace whose PeerAuthentication,
// Telemetry, AuthorizationPolicy and RequestAuthentication without a
// selector are mesh-wide. If ns is "", the default is DefaultRootNamespace.
func WithRootNamespace(ns string) Option {
	return func(o *options) {
		if ns != "" {
			o.rootNamespace = ns
		}
	}
}

// WithAutoMTLS turns auto mTLS on or off (Istio's meshConfig
// enableAutoMtls, on by default): when on, clusters without a
// DestinationRule tls setting originate ISTIO_MUTUAL TLS to the endpoints
// that run a proxy and plain text to the others (docs/xds-conventions.md,
// "mTLS"). Inbound listeners follow PeerAuthentication either way.
func WithAutoMTLS(enabled bool) Option {
	return func(o *options) { o.autoMTLS = enabled }
}

// WithRegistry makes Parse read Kubernetes Services and workloads from reg
// (the Kubernetes mode's registry, fed by the API server) instead of from
// the Kubernetes objects of the revision, which are then ignored.
// ServiceEntries always come from the revision. If reg is nil, the
// default is registry.FromObjects over the revision's objects.
func WithRegistry(reg registry.Registry) Option {
	return func(o *options) { o.registry = reg }
}

// WithProblems adds the per-document problems sources.Build found (bad
// YAML, a document without metadata.name, a duplicate key) to Parse's
// diagnostics, each at its file and line, so that a revision with such a
// document fails validation like any other error while the rest of its
// objects are still checked.
func WithProblems(problems []sources.Problem) Option {
	return func(o *options) { o.problems = append(o.problems, problems...) }
}

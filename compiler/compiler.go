// Package compiler parses policy Objects into a typed Policy (istio.io/api
// types for Istio kinds), validates it into coded Diagnostics, and
// translates it into Envoy xDS resources for one ProxyClass at a time.
//
// It does no I/O and keeps no state: the same Objects and the same
// ProxyClass compile to the same bytes and the same versions on any replica.
// Resource names and shapes follow docs/xds-conventions.md.
package compiler

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// Snapshot is the compiled xDS resources for one ProxyClass.
type Snapshot struct {
	// Class is the ProxyClass the snapshot was compiled for.
	Class nodemeta.ProxyClass
	// Version is a content hash of the policy-derived resources (listeners,
	// routes, clusters): equal policy compiles to an equal Version. Live
	// endpoint changes do not change it.
	Version string
	// Resources holds every type with its own content-hash version
	// (Resources.GetVersion(typeURL)), so an endpoint change re-sends only
	// endpoints.
	Resources *cachev3.Snapshot
}

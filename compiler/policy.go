package compiler

import (
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/sources"
)

// Policy is the typed, validated model of all Objects of a Revision.
//
// Parse builds it. Objects whose spec could not be decoded are left out;
// the rest are kept even when they have diagnostics, so that a Policy with
// errors can still be inspected (and compiled best-effort, e.g. for a diff),
// but it must never be deployed: check Diagnostics.HasErrors first.
type Policy struct {
	// VirtualServices, DestinationRules, ServiceEntries and WorkloadEntries
	// are the decoded Istio objects, each list sorted by namespace and name.
	VirtualServices  []*VirtualService
	DestinationRules []*DestinationRule
	ServiceEntries   []*ServiceEntry
	WorkloadEntries  []*WorkloadEntry
	// Pending holds gitmesh.io objects of kinds that are recognised but
	// not compiled yet, in input order. (A RolloutPolicy is read by
	// RolloutPolicy.)
	Pending []sources.Object

	// services is the service registry derived from ServiceEntries, with
	// the DestinationRules, VirtualServices and WorkloadEntries attached,
	// sorted by FQDN. Only valid parts of objects enter it.
	services []*service
	byHost   map[string]*service

	rollout    *v1alpha1.RolloutPolicy // nil when the revision has none
	rolloutObj sources.Object          // where rollout was written
}

// Meta identifies a decoded object and where it was written.
type Meta struct {
	// Namespace is metadata.namespace, or the default namespace.
	Namespace string
	// Name is metadata.name.
	Name string
	// Object is the object as sources built it (YAML, Origin, Lines).
	Object sources.Object
}

// VirtualService is a decoded networking.istio.io VirtualService.
type VirtualService struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.VirtualService
}

// DestinationRule is a decoded networking.istio.io DestinationRule.
type DestinationRule struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.DestinationRule
}

// ServiceEntry is a decoded networking.istio.io ServiceEntry.
type ServiceEntry struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.ServiceEntry
}

// WorkloadEntry is a decoded networking.istio.io WorkloadEntry.
type WorkloadEntry struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.WorkloadEntry
}

// service is one host of a ServiceEntry, normalized.
type service struct {
	fqdn      string
	name      string // short name for metadata ("reviews", or the FQDN for external hosts)
	namespace string // the ServiceEntry's namespace
	local     bool   // fqdn is <name>.<namespace>.svc.cluster.local
	entry     *ServiceEntry

	resolution networking.ServiceEntry_Resolution // NONE, STATIC or DNS
	ports      []servicePort                      // sorted by number
	endpoints  []endpoint                         // inline spec.endpoints (valid ones)
	selector   map[string]string                  // spec.workloadSelector.labels; nil when unset
	selected   []endpoint                         // WorkloadEntries the selector picks

	subsets []subset         // from the DestinationRule, sorted by name
	routes  []httpRoute      // from the VirtualService, in order
	rule    *DestinationRule // nil when none
	vs      *VirtualService  // nil when none
}

// servicePort is one valid spec.ports entry.
type servicePort struct {
	number     uint32
	name       string
	protocol   string // HTTP, HTTP2 or GRPC
	targetPort uint32 // 0 when unset
}

// endpoint is a service instance before it is bound to a port.
type endpoint struct {
	address  string
	ports    map[string]uint32 // port name -> port
	port     uint32            // when non-zero, used for every service port (fleet workloads)
	labels   map[string]string
	weight   uint32 // >= 1
	workload string // node id, WorkloadEntry name or ServiceEntry name
	ns       string
}

// subset is a valid DestinationRule subset.
type subset struct {
	name   string
	labels map[string]string
}

// httpRoute is one valid spec.http entry of a VirtualService.
type httpRoute struct {
	valid   bool // no diagnostics; only valid routes are compiled
	name    string
	matches []routeMatch // empty: match everything
	dests   []routeDest
}

// routeMatch is one spec.http[].match entry.
type routeMatch struct {
	name      string
	uriExact  string
	uriPrefix string
	hasURI    bool
	exact     bool // uri is exact (else prefix)
	headers   []headerMatch
}

// headerMatch matches one request header.
type headerMatch struct {
	name    string // lower case
	exact   string
	present bool // no value given: the header must be present
}

// routeDest is one spec.http[].route entry.
type routeDest struct {
	path   string // "spec.http[0].route[1]", for diagnostics
	host   string // FQDN
	subset string
	port   uint32 // 0 when unset
	weight uint32
}

package compiler

import (
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/registry"
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
	// Gateways and Sidecars are the decoded Gateway and Sidecar objects,
	// sorted by namespace and name.
	Gateways []*Gateway
	Sidecars []*Sidecar
	// PeerAuthentications are the decoded security.istio.io
	// PeerAuthentication objects, sorted by namespace and name.
	PeerAuthentications []*PeerAuthentication
	// Pending holds gitmesh.io objects of kinds that are recognised but
	// not compiled yet, in input order. (A RolloutPolicy is read by
	// RolloutPolicy.)
	Pending []sources.Object
	// AuthorizationPolicies and RequestAuthentications are the decoded
	// security.istio.io objects, sorted by namespace and name (authz.go).
	AuthorizationPolicies  []*AuthorizationPolicy
	RequestAuthentications []*RequestAuthentication
	// Telemetries are the decoded telemetry.istio.io objects, sorted by
	// namespace and name (telemetry.go).
	Telemetries []*Telemetry

	// services is the service registry derived from ServiceEntries, with
	// the DestinationRules, VirtualServices and WorkloadEntries attached,
	// sorted by FQDN. Only valid parts of objects enter it.
	services []*service
	byHost   map[string]*service
	// droppedHosts are hosts of ServiceEntries left out of the registry
	// for an error already reported (an unsupported resolution):
	// references to them are not reported again as unknown hosts.
	droppedHosts map[string]bool

	// virtualServices are the valid VirtualServices with hosts (delegates
	// merged in), sorted by namespace and name; meshVSs indexes the ones
	// bound to sidecars by host, in that order, without two visible to
	// the same namespace (see CodeConflictingVirtualServices and
	// meshVirtualService).
	virtualServices []*virtualService
	meshVSs         map[string][]*virtualService
	// kubeObjects are the Kubernetes objects of the revision (Services,
	// workload kinds), in input order; registry is the service registry
	// built from them, or the one WithRegistry gave.
	kubeObjects []sources.Object
	registry    registry.Registry
	// wildcardVS are the wildcard hosts of VirtualServices bound to
	// sidecars, bound to the services they match after every exact host.
	wildcardVS []wildcardBinding
	// gateways are the valid Gateways by "namespace/name"; gatewayList
	// holds them sorted by namespace and name.
	gateways    map[string]*gateway
	gatewayList []*gateway
	// sidecars are the valid Sidecars, sorted by namespace and name.
	sidecars []*sidecarScope

	// mtls holds the mTLS settings of Parse and the valid
	// PeerAuthentications (see mtls.go and peerauthn.go).
	mtls mtlsSettings
	// telemetry holds the valid Telemetries by scope and the mesh
	// config's providers (see telemetry.go).
	telemetry telemetryScopes
	// jwks are the fetched JWKS documents by jwksUri (WithJWKS).
	jwks map[string]string

	rollout    *v1alpha1.RolloutPolicy // nil when the revision has none
	rolloutObj sources.Object          // where rollout was written

	// cache is WithCache's, shared with Compile; nil when none.
	cache *Cache
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

// Gateway is a decoded networking.istio.io Gateway.
type Gateway struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.Gateway
}

// Sidecar is a decoded networking.istio.io Sidecar.
type Sidecar struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *networking.Sidecar
}

// service is one host of a ServiceEntry, normalized.
type service struct {
	fqdn      string
	name      string            // short name for metadata ("reviews", or the FQDN for external hosts)
	namespace string            // the ServiceEntry's namespace
	local     bool              // fqdn is <name>.<namespace>.svc.cluster.local
	entry     *ServiceEntry     // nil for a registry service
	kube      *registry.Service // nil for a ServiceEntry host

	resolution networking.ServiceEntry_Resolution // NONE, STATIC or DNS
	ports      []servicePort                      // sorted by number
	// droppedPorts are port numbers declared with an error already
	// reported (an unsupported protocol, a bad name): references to them
	// are not reported again as unknown ports.
	droppedPorts map[uint32]bool
	endpoints    []endpoint        // inline spec.endpoints (valid ones)
	selector     map[string]string // spec.workloadSelector.labels; nil when unset
	selected     []endpoint        // WorkloadEntries the selector picks

	export exportTo // spec.exportTo
	// addresses are the service's virtual IPs (ServiceEntry addresses, a
	// Kubernetes Service's cluster IPs): where a captured client's
	// connections were headed (docs/capture.md).
	addresses []string

	subsets []subset                  // from the DestinationRule, sorted by name
	policy  *networking.TrafficPolicy // the DestinationRule's top-level trafficPolicy (nil when none)
	rule    *DestinationRule          // nil when none
	vs      *VirtualService           // the VirtualService bound to mesh for this host; nil when none
	routes  []*httpRoute              // its http routes, in order
	tcp     []*tcpRoute               // its tcp routes, in order
}

// servicePort is one valid spec.ports entry.
type servicePort struct {
	number     uint32
	name       string
	protocol   string // HTTP, HTTP2, GRPC or TCP
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
	// sa is the service account of the instance ("" when unknown): its
	// SPIFFE id is what clients verify.
	sa string
	// proxied: the instance runs a gitmesh sidecar that terminates mTLS on
	// the endpoint address (a connected sidecar, or a registry pod whose
	// traffic a connected sidecar captures). It, or the label
	// security.istio.io/tlsMode: istio, makes the instance meshed unless
	// its PeerAuthentication disables mTLS (see markMeshed).
	proxied bool
	// appPort is the port of a connected sidecar's application, which
	// PeerAuthentication portLevelMtls names; 0 for other instances.
	appPort uint32
	// meshed is set per service port by markMeshed: clients originate
	// ISTIO_MUTUAL to the instance (its LbEndpoint carries tlsMode: istio).
	meshed bool
}

// subset is a valid DestinationRule subset.
type subset struct {
	name   string
	labels map[string]string
	policy *networking.TrafficPolicy // subset trafficPolicy; nil when none
}

// virtualService is a VirtualService, validated and normalized.
type virtualService struct {
	obj      *VirtualService
	hosts    []string // FQDNs (short names resolved in the VS namespace), or wildcards for gateways
	mesh     bool     // bound to sidecars ("mesh" listed, or no gateways)
	gateways []string // "namespace/name" of the Gateways it is bound to
	export   exportTo
	http     []*httpRoute // delegates merged in
	tcp      []*tcpRoute
}

// httpRoute is one spec.http entry of a VirtualService (or a delegate's
// route merged into its root).
type httpRoute struct {
	valid   bool      // no errors; only valid routes are compiled
	path    string    // "spec.http[0]", for diagnostics
	owner   *reporter // reports about the object the route is written in (a delegate's, once merged)
	spec    *networking.HTTPRoute
	dests   []routeDest // spec.route, resolved
	mirrors []routeDest // spec.mirror and spec.mirrors[].destination, resolved
}

// routeDest is one destination of a route (or a mirror), resolved.
type routeDest struct {
	path    string // "spec.http[0].route[1]", for diagnostics
	host    string // FQDN
	subset  string
	port    uint32 // 0 when unset
	weight  uint32
	headers *networking.Headers // spec.http[].route[].headers; nil when none
	percent *networking.Percent // mirrors[].percentage; nil when unset
}

// tcpRoute is one spec.tcp entry of a VirtualService.
type tcpRoute struct {
	valid bool
	path  string
	owner *reporter
	spec  *networking.TCPRoute
	dests []routeDest
}

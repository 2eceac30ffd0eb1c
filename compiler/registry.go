package compiler

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// This file joins the service registry (package registry: Kubernetes
// Services and workloads) with the ServiceEntries of the revision, and
// holds the checks that need both: subsets against declared workloads,
// VirtualServices on one host by visibility (exportTo), and destinations
// not exported to the namespace that routes to them.

// Diagnostic codes of the service registry (docs/diagnostics.md).
const (
	// CodeSubsetSelectsNoWorkload: a DestinationRule subset of a
	// Kubernetes Service selects none of the workloads the revision
	// declares for it (istioctl IST0173 DestinationRuleSubsetNotSelectPods).
	CodeSubsetSelectsNoWorkload = "GM0220"
	// CodeShadowedServiceEntryHost: a ServiceEntry host that is also a
	// Kubernetes Service's host; the Service is used.
	CodeShadowedServiceEntryHost = "GM0221"
	// CodePortProtocolDetected: a Kubernetes Service port whose name and
	// appProtocol name no protocol (istioctl IST0118
	// PortNameIsNotUnderNamingConvention); gitmesh proxies it as TCP.
	CodePortProtocolDetected = "GM0222"
)

// kindService is the Kubernetes kind of a registry service.
const kindService = "Service"

// buildRegistry sets p.registry: the one the options give, else one read
// from the revision's Kubernetes objects, whose findings become
// diagnostics.
func (p *Policy) buildRegistry(o options, diags *Diagnostics) {
	if o.registry != nil {
		p.registry = o.registry
		return
	}
	reg, findings := registry.FromObjects(p.kubeObjects, o.defaultNamespace)
	p.registry = reg
	for _, f := range findings {
		r := &reporter{obj: f.Object, kind: f.Object.Kind, ns: f.Namespace, diag: diags}
		switch f.Reason {
		case registry.ReasonDuplicate:
			r.errorf(CodeDuplicateObject, f.Field, "%s", f.Message)
		case registry.ReasonPortName:
			r.report(CodePortProtocolDetected, SeverityInfo, f.Field, "%s; Istio detects the protocol of each connection, gitmesh proxies the port as TCP (name it http-*, grpc-* or tcp-*, or set appProtocol)", f.Message)
		default:
			r.errorf(CodeInvalidValue, f.Field, "%s", f.Message)
		}
	}
}

// linkRegistry adds the registry's services to p.services and p.byHost.
// It runs before ServiceEntries are linked: a Kubernetes Service's host
// is the Service's, whatever a ServiceEntry says (see
// CodeShadowedServiceEntryHost).
func (p *Policy) linkRegistry() {
	if p.registry == nil {
		return
	}
	for _, ks := range p.registry.Services() {
		if _, dup := p.byHost[ks.Hostname]; dup {
			continue // two feeds with one host: the first (sorted) wins
		}
		s := kubeService(ks)
		p.byHost[s.fqdn] = s
		p.services = append(p.services, s)
	}
}

// kubeService converts a registry service into the compiler's model: an
// EDS service (Istio's client-side load balancing) whose endpoints are
// the meshed workloads its selector picks (see serviceEndpoints) plus the
// ready endpoints the registry knows.
func kubeService(ks *registry.Service) *service {
	s := &service{
		fqdn: ks.Hostname, name: ks.Name, namespace: ks.Namespace, kube: ks,
		resolution: networking.ServiceEntry_STATIC,
		selector:   copyLabels(ks.Selector),
		export:     exportFromList(ks.ExportTo),
		addresses:  ks.Addresses,
	}
	if _, _, ok := splitLocal(ks.Hostname); ok {
		s.local = true
	}
	for _, pt := range ks.Ports {
		s.ports = append(s.ports, servicePort{number: pt.Number, name: pt.Name, protocol: compiledProtocol(pt.Protocol), targetPort: pt.TargetPort})
	}
	sortPorts(s.ports)
	for _, ep := range ks.Endpoints {
		if !ep.Ready || !isIP(ep.Address) {
			continue
		}
		s.endpoints = append(s.endpoints, endpoint{
			address: ep.Address, ports: ep.Ports, labels: copyLabels(ep.Labels),
			weight: 1, workload: ep.Workload, ns: ks.Namespace, sa: ep.ServiceAccount,
		})
	}
	return s
}

// compiledProtocol maps Istio's protocol of a Kubernetes Service port to
// one gitmesh compiles: HTTP, HTTP2 (also gRPC-Web, which Istio sends
// upstream over HTTP/2), gRPC, and TCP for everything else (TLS, HTTPS,
// Mongo, Redis, MySQL, TCP and ports whose protocol Istio detects).
func compiledProtocol(p registry.Protocol) string {
	switch p {
	case registry.ProtocolHTTP:
		return protoHTTP
	case registry.ProtocolHTTP2, registry.ProtocolGRPCWeb:
		return protoHTTP2
	case registry.ProtocolGRPC:
		return protoGRPC
	}
	return protoTCP
}

// exportFromList is a registry exportTo list as an exportTo.
func exportFromList(list []string) exportTo {
	if len(list) == 0 {
		return exportTo{all: true}
	}
	var e exportTo
	for _, n := range list {
		switch n {
		case "*":
			e.all = true
		case "~":
		default:
			e.namespaces = append(e.namespaces, n)
		}
	}
	return e
}

// serviceReporter reports about the object that declared s.
func serviceReporter(s *service, diags *Diagnostics) *reporter {
	if s.entry != nil {
		return newReporter(&s.entry.Meta, KindServiceEntry, diags)
	}
	obj := s.kube.Object
	if obj == nil {
		obj = &sources.Object{Kind: kindService, Name: s.kube.Name, Namespace: s.namespace}
	}
	return &reporter{obj: obj, kind: kindService, ns: s.namespace, diag: diags}
}

// servicePortPath is the path of service port n in the object that
// declared s.
func servicePortPath(s *service, n uint32, fallback int) string {
	if s.entry != nil {
		return portPath(s.entry.Spec.GetPorts(), n, fallback)
	}
	for _, pt := range s.kube.Ports {
		if pt.Number == n {
			return pt.Field + ".port"
		}
	}
	return "spec.ports"
}

// shadowedByService reports a ServiceEntry host that a Kubernetes Service
// already declares, and says whether it did.
func (p *Policy) shadowedByService(r *reporter, se *ServiceEntry, fqdn string) bool {
	s := p.byHost[fqdn]
	if s == nil || s.kube == nil {
		return false
	}
	where := "the service registry"
	if s.kube.Object != nil {
		where = s.kube.Object.Origin.String()
	}
	r.warnf(CodeShadowedServiceEntryHost, hostPath(se.Spec.GetHosts(), se.Namespace, fqdn),
		"host %s is Kubernetes Service %s/%s (%s); this ServiceEntry's ports and endpoints for it are ignored", fqdn, s.namespace, s.name, where)
	return true
}

// checkSubsetWorkloads warns about each subset of dr (attached to s) that
// selects none of the workloads the registry declares for s, as istioctl
// checks subsets against pods. Services without declared workloads
// (ServiceEntries, Services whose Deployments are not in Git) are not
// checked: there is nothing to compare with.
func (p *Policy) checkSubsetWorkloads(r *reporter, dr *DestinationRule, s *service) {
	if s.kube == nil {
		return
	}
	declared := registry.SelectedWorkloads(p.registry, s.kube)
	if len(declared) == 0 {
		return
	}
	for i, ss := range dr.Spec.GetSubsets() {
		if !s.hasSubset(ss.GetName()) {
			continue // invalid, reported by checkDestinationRule
		}
		found := false
		for _, w := range declared {
			if registry.Selects(ss.GetLabels(), w.Labels) {
				found = true
				break
			}
		}
		if !found {
			r.warnf(CodeSubsetSelectsNoWorkload, fmt.Sprintf("spec.subsets[%d].labels", i),
				"subset %q selects none of the workloads of Service %s/%s (%s); its traffic would fail with 503 (no healthy upstream)",
				ss.GetName(), s.namespace, s.name, workloadNames(declared))
		}
	}
}

func workloadNames(ws []*registry.Workload) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Kind + " " + w.Name + " " + formatSelector(w.Labels)
	}
	return strings.Join(names, ", ")
}

// bindMeshHost binds a VirtualService to host h for sidecars. As istioctl
// (IST0109) and Istio's push context see it, two VirtualServices on one
// host conflict only when some namespace sees both: one is exported to
// every namespace, or their exportTo lists share a namespace. Two
// VirtualServices each exported to its own namespace ("."), in different
// namespaces, both apply, each in its namespace. The check runs whether
// or not h is declared.
func (p *Policy) bindMeshHost(r *reporter, v *virtualService, h, path string) {
	for _, other := range p.meshVSs[h] {
		if exportsOverlap(v.export, other.export) {
			o := other.obj
			r.errorf(CodeConflictingVirtualServices, path, "host %s already has VirtualService %s/%s (%s); only one VirtualService per host is supported for sidecars",
				h, o.Namespace, o.Name, o.Object.At("spec.hosts"))
			return
		}
	}
	p.meshVSs[h] = append(p.meshVSs[h], v)
	s := p.byHost[h]
	switch {
	case s == nil && p.droppedHosts[h]:
		// its ServiceEntry is already reported
	case s == nil:
		r.warnf(CodeUnusedVirtualServiceHost, path, "host %s is not declared by any ServiceEntry or Kubernetes Service; these rules have no effect for it", h)
	case s.vs == nil:
		s.vs, s.routes, s.tcp = v.obj, v.http, v.tcp
	}
}

// exportsOverlap reports whether a namespace sees objects exported by a
// and by b.
func exportsOverlap(a, b exportTo) bool {
	if a.all || b.all {
		return true
	}
	for _, n := range a.namespaces {
		if b.visibleTo(n) {
			return true
		}
	}
	return false
}

// meshVirtualService returns the VirtualService a sidecar of the proxy's
// namespace uses for host, in Istio's order: one exported only to some
// namespaces and written in the proxy's own, then one exported to the
// proxy's namespace by name, then one exported to every namespace; nil
// when none is visible.
func (b *builder) meshVirtualService(host string) *virtualService {
	var best *virtualService
	bestRank := 3
	for _, v := range b.p.meshVSs[host] {
		if !v.export.visibleTo(b.namespace) {
			continue
		}
		rank := 2
		if !v.export.all {
			rank = 1
			if v.obj.Namespace == b.namespace {
				rank = 0
			}
		}
		if rank < bestRank {
			best, bestRank = v, rank
		}
	}
	return best
}

// checkDestinationExported reports a route destination whose service is
// not exported where the VirtualService is used, as istioctl's
// destination host check (IST0101) does: the service must be exported to
// every namespace, or, for a VirtualService without exportTo, to the
// VirtualService's namespace, or to one of the namespaces the
// VirtualService is exported to. Undeclared hosts are reported elsewhere.
func (p *Policy) checkDestinationExported(r *reporter, d routeDest, v *virtualService) bool {
	s := p.byHost[d.host]
	if s == nil || s.export.all {
		return true
	}
	scopes := v.obj.Spec.GetExportTo()
	if len(scopes) == 0 {
		scopes = []string{"."}
	}
	for _, n := range scopes {
		if n == "." {
			n = v.obj.Namespace
		}
		if n != "*" && s.export.visibleTo(n) {
			return true
		}
	}
	kind, name := kindService, s.name
	if s.entry != nil {
		kind, name = KindServiceEntry, s.entry.Name
	}
	visible := strings.Join(s.export.namespaces, ", ")
	if visible == "" {
		visible = "no namespace"
	}
	r.errorf(CodeUnknownHost, d.path+".destination.host", "host %s (%s %s/%s) is not exported to namespace %s (exportTo: %s)",
		d.host, kind, s.namespace, name, v.obj.Namespace, visible)
	return false
}

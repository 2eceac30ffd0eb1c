package compiler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1"
)

// link validates every object, builds the service registry from the valid
// parts and checks references across objects: hosts declared twice,
// VirtualService and DestinationRule hosts, destinations (host, subset,
// port), and which WorkloadEntries a ServiceEntry selects.
func (p *Policy) link(diags *Diagnostics) {
	p.byHost = map[string]*service{}
	p.droppedHosts = map[string]bool{}
	p.linkRegistry()
	owner := map[string]*ServiceEntry{}
	for _, se := range p.ServiceEntries {
		r := newReporter(&se.Meta, KindServiceEntry, diags)
		services := checkServiceEntry(r, se)
		if services == nil {
			for _, h := range se.Spec.GetHosts() {
				p.droppedHosts[resolveHost(strings.ToLower(h), se.Namespace)] = true
			}
		}
		for _, s := range services {
			if p.shadowedByService(r, se, s.fqdn) {
				continue
			}
			if first, ok := owner[s.fqdn]; ok {
				r.errorf(CodeDuplicateHost, hostPath(se.Spec.GetHosts(), se.Namespace, s.fqdn),
					"host %s is already declared by ServiceEntry %s/%s (%s)", s.fqdn, first.Namespace, first.Name, first.Object.At("spec.hosts"))
				continue
			}
			owner[s.fqdn] = se
			p.byHost[s.fqdn] = s
			p.services = append(p.services, s)
		}
	}
	sort.Slice(p.services, func(i, j int) bool { return p.services[i].fqdn < p.services[j].fqdn })

	p.linkWorkloadEntries(diags)
	p.linkDestinationRules(diags)
	p.linkGateways(diags)
	p.linkSidecars(diags)
	p.linkPeerAuthentications(diags)
	p.linkVirtualServices(diags)
	p.checkTCPPorts(diags)
}

func newReporter(m *Meta, kind string, diags *Diagnostics) *reporter {
	return &reporter{obj: &m.Object, kind: kind, ns: m.Namespace, diag: diags}
}

// hostPath returns the path of the entry of hosts that resolves to fqdn.
func hostPath(hosts []string, ns, fqdn string) string {
	for i, h := range hosts {
		if resolveHost(h, ns) == fqdn {
			return fmt.Sprintf("spec.hosts[%d]", i)
		}
	}
	return "spec.hosts"
}

// linkWorkloadEntries gives each ServiceEntry with a workloadSelector the
// WorkloadEntries of its namespace whose labels match.
func (p *Policy) linkWorkloadEntries(diags *Diagnostics) {
	for _, we := range p.WorkloadEntries {
		r := newReporter(&we.Meta, KindWorkloadEntry, diags)
		ep, ok := checkWorkloadEntry(r, we)
		if !ok {
			continue
		}
		selected := false
		for _, s := range p.services {
			if s.selector != nil && s.namespace == we.Namespace && labelsMatch(s.selector, ep.labels) {
				selected = true
				if !isIP(ep.address) {
					r.warnf(CodeUnsupportedValue, "spec.address", "address %q is a host name, which only a ServiceEntry with resolution DNS can use; ServiceEntry %s/%s (resolution %s) leaves this WorkloadEntry out",
						ep.address, s.entry.Namespace, s.entry.Name, s.resolution)
					continue
				}
				s.selected = append(s.selected, ep)
			}
		}
		if !selected {
			r.report(CodeUnselectedWorkloadEntry, SeverityInfo, "spec.labels",
				"no ServiceEntry or Kubernetes Service in namespace %s selects this WorkloadEntry; it receives no traffic", we.Namespace)
		}
	}
}

// linkDestinationRules attaches each DestinationRule's subsets and
// traffic policy to its host. A DestinationRule whose host is a wildcard
// ("*.example.com", "*.svc.cluster.local", "*") is a default for every
// service it matches that has no DestinationRule of its own; the most
// specific host wins, as in Istio.
func (p *Policy) linkDestinationRules(diags *Diagnostics) {
	first := map[string]*DestinationRule{} // by host, declared or not
	type wildcardRule struct {
		dr      *DestinationRule
		r       *reporter
		host    string
		subsets []subset
		policy  *networking.TrafficPolicy
	}
	var wildcards []wildcardRule
	for _, dr := range p.DestinationRules {
		r := newReporter(&dr.Meta, KindDestinationRule, diags)
		host, subsets, policy, ok := checkDestinationRule(r, dr)
		if !ok {
			continue
		}
		if f := first[host]; f != nil {
			r.errorf(CodeConflictingDestinationRules, "spec.host", "host %s already has DestinationRule %s/%s (%s); only one DestinationRule per host is supported",
				host, f.Namespace, f.Name, f.Object.At("spec.host"))
			continue
		}
		first[host] = dr
		if isWildcardHost(host) {
			wildcards = append(wildcards, wildcardRule{dr, r, host, subsets, policy})
			continue
		}
		s := p.byHost[host]
		switch {
		case s == nil && p.droppedHosts[host]:
			// its ServiceEntry is already reported
		case s == nil:
			r.warnf(CodeUnusedDestinationRule, "spec.host", "host %s is not declared by any ServiceEntry or Kubernetes Service; the DestinationRule has no effect", host)
		default:
			s.rule, s.subsets, s.policy = dr, subsets, policy
			p.checkSubsetWorkloads(r, dr, s)
		}
	}
	sort.SliceStable(wildcards, func(i, j int) bool { return hostSpecificity(wildcards[i].host) > hostSpecificity(wildcards[j].host) })
	for _, w := range wildcards {
		used := false
		for _, s := range p.services {
			if s.rule == nil && hostMatches(w.host, s.fqdn) {
				s.rule, s.subsets, s.policy = w.dr, w.subsets, w.policy
				used = true
			}
		}
		if !used && !p.anyServiceMatches(w.host) {
			w.r.warnf(CodeUnusedDestinationRule, "spec.host", "host %s matches no service declared by a ServiceEntry or Kubernetes Service; the DestinationRule has no effect", w.host)
		}
	}
}

// hostSpecificity orders hosts from the most specific: a name before any
// wildcard, then longer wildcard suffixes first, "*" last.
func hostSpecificity(h string) int {
	switch {
	case h == "*":
		return 0
	case strings.HasPrefix(h, "*."):
		return len(h)
	}
	return 1 << 20
}

// anyServiceMatches reports whether the wildcard host matches a service.
func (p *Policy) anyServiceMatches(host string) bool {
	for _, s := range p.services {
		if hostMatches(host, s.fqdn) {
			return true
		}
	}
	return false
}

// lookupService returns the service a destination host names: the service
// of that exact host, else the one of the most specific wildcard
// ServiceEntry host that matches it ("api.example.com" is served by a
// ServiceEntry for "*.example.com"), or nil.
func (p *Policy) lookupService(host string) *service {
	if s := p.byHost[host]; s != nil {
		return s
	}
	var best *service
	for _, s := range p.services {
		if isWildcardHost(s.fqdn) && hostMatches(s.fqdn, host) && (best == nil || hostSpecificity(s.fqdn) > hostSpecificity(best.fqdn)) {
			best = s
		}
	}
	return best
}

// linkVirtualServices validates every VirtualService, merges delegates
// into their roots, checks every destination, binds each root to its
// hosts (sidecars) and gateways, and runs the rule analyzers.
func (p *Policy) linkVirtualServices(diags *Diagnostics) {
	p.meshVSs = map[string][]*virtualService{}
	delegates := map[string]*virtualService{}
	var roots []*virtualService
	for _, vs := range p.VirtualServices {
		r := newReporter(&vs.Meta, KindVirtualService, diags)
		v := p.checkVirtualService(r, vs)
		p.analyzeRules(r, v)
		if len(vs.Spec.GetHosts()) == 0 {
			delegates[vs.Namespace+"/"+vs.Name] = v
			continue
		}
		roots = append(roots, v)
	}
	used := p.mergeDelegates(roots, delegates)
	for _, key := range sortedKeys(delegates) {
		v := delegates[key]
		r := newReporter(&v.obj.Meta, KindVirtualService, diags)
		if !used[key] {
			r.errorf(CodeMissingField, "spec.hosts", "at least one host is required (a VirtualService without hosts is a delegate, and no VirtualService delegates to %s)", key)
		}
		if used[key] && len(v.obj.Spec.GetGateways()) > 0 {
			r.errorf(CodeConflictingFields, "spec.gateways", "a delegate VirtualService (without hosts) cannot set gateways; its root's apply")
		}
		for _, t := range v.tcp {
			r.errorf(CodeUnsupportedValue, t.path, "a delegate VirtualService can only have http routes")
		}
	}
	p.wildcardVS = nil
	for _, v := range roots {
		r := newReporter(&v.obj.Meta, KindVirtualService, diags)
		from := p.arrivalPorts(v)
		for _, rt := range v.http {
			for _, d := range append(append([]routeDest(nil), rt.dests...), rt.mirrors...) {
				if !p.checkRouteDestination(rt.owner, d, from) || !p.checkDestinationExported(rt.owner, d, v) {
					rt.valid = false
				}
			}
		}
		for _, rt := range v.tcp {
			for _, d := range rt.dests {
				if !p.checkRouteDestination(rt.owner, d, from) || !p.checkDestinationExported(rt.owner, d, v) {
					rt.valid = false
				}
			}
		}
		p.bindVirtualService(r, v)
		p.virtualServices = append(p.virtualServices, v)
	}
	p.bindWildcardHosts()
}

// bindVirtualService attaches a root VirtualService to the services of its
// hosts (when bound to sidecars) and checks its hosts against the servers
// of its gateways. Wildcard hosts are bound later (bindWildcardHosts).
func (p *Policy) bindVirtualService(r *reporter, v *virtualService) {
	spec := v.obj.Spec
	for _, h := range v.hosts {
		path := hostPath(spec.GetHosts(), v.obj.Namespace, h)
		if !v.mesh {
			continue
		}
		if isWildcardHost(h) {
			p.wildcardVS = append(p.wildcardVS, wildcardBinding{v: v, r: r, host: h, path: path})
			continue
		}
		p.bindMeshHost(r, v, h, path)
	}
	p.checkGatewayHosts(r, v)
}

// wildcardBinding is a wildcard host of a VirtualService bound to
// sidecars, waiting for bindWildcardHosts.
type wildcardBinding struct {
	v    *virtualService
	r    *reporter
	host string
	path string
}

// bindWildcardHosts binds the wildcard hosts of VirtualServices bound to
// sidecars to every service they match that no VirtualService names
// exactly, the most specific wildcard first (as Istio picks the most
// specific host).
func (p *Policy) bindWildcardHosts() {
	sort.SliceStable(p.wildcardVS, func(i, j int) bool {
		return hostSpecificity(p.wildcardVS[i].host) > hostSpecificity(p.wildcardVS[j].host)
	})
	claimed := map[string]wildcardBinding{}
	for _, b := range p.wildcardVS {
		if first, ok := claimed[b.host]; ok && first.v != b.v {
			b.r.errorf(CodeConflictingVirtualServices, b.path, "host %s already has VirtualService %s/%s (%s); only one VirtualService per host is supported for sidecars",
				b.host, first.v.obj.Namespace, first.v.obj.Name, first.v.obj.Object.At("spec.hosts"))
			continue
		}
		claimed[b.host] = b
		matched := false
		for _, s := range p.services {
			if !hostMatches(b.host, s.fqdn) {
				continue
			}
			matched = true
			if len(p.meshVSs[s.fqdn]) == 0 {
				// no VirtualService names it exactly: the wildcard's applies
				p.meshVSs[s.fqdn] = append(p.meshVSs[s.fqdn], b.v)
			}
			if s.vs == nil {
				s.vs, s.routes, s.tcp = b.v.obj, b.v.http, b.v.tcp
			}
		}
		if !matched {
			b.r.warnf(CodeUnusedVirtualServiceHost, b.path, "host %s matches no service declared by a ServiceEntry or Kubernetes Service; these rules have no effect for it", b.host)
		}
	}
}

// checkGatewayHosts reports each Gateway v binds to whose servers accept
// none of v's hosts (istioctl IST0132 VirtualServiceHostNotFoundInGateway):
// a gateway needs at least one host in common, not every host. Server
// hosts may be namespace-scoped ("ns/host", "./host", "*/host").
func (p *Policy) checkGatewayHosts(r *reporter, v *virtualService) {
	spec := v.obj.Spec
	for i, key := range v.gateways {
		gw := p.gateways[key]
		// a dropped server that would match is already reported
		if acceptsAnyHost(gw.servers, v) || acceptsAnyHost(gw.dropped, v) {
			continue
		}
		r.warnf(CodeHostNotInGateway, gatewayRefPath(spec.GetGateways(), i), "none of the hosts %s is among the hosts of Gateway %s (%s); the gateway does not route this VirtualService",
			strings.Join(spec.GetHosts(), ", "), key, gatewayRef(spec.GetGateways(), i))
	}
}

// acceptsAnyHost reports whether one of servers accepts one of v's hosts.
func acceptsAnyHost(servers []*gatewayServer, v *virtualService) bool {
	for _, srv := range servers {
		for _, h := range v.hosts {
			if serverHostFor(srv, v.obj.Namespace, h) != "" {
				return true
			}
		}
	}
	return false
}

// gatewayRefPath returns the path of the i-th non-mesh gateway reference.
func gatewayRefPath(refs []string, i int) string {
	n := 0
	for j, g := range refs {
		if g == meshGateway {
			continue
		}
		if n == i {
			return fmt.Sprintf("spec.gateways[%d]", j)
		}
		n++
	}
	return "spec.gateways"
}

// gatewayRef names the i-th non-mesh gateway reference as written.
func gatewayRef(refs []string, i int) string {
	n := 0
	for _, g := range refs {
		if g == meshGateway {
			continue
		}
		if n == i {
			return g
		}
		n++
	}
	return ""
}

// arrival is a port traffic arrives on before a route sends it on.
type arrival struct {
	port uint32
	what string // "a port of reviews.default.svc.cluster.local", "port of Gateway ns/name"
}

// arrivalPorts are the ports a VirtualService's routes receive traffic on:
// its hosts' service ports (sidecars) and its gateways' server ports.
func (p *Policy) arrivalPorts(v *virtualService) []arrival {
	var out []arrival
	if v.mesh {
		for _, h := range v.hosts {
			if !isWildcardHost(h) { // p.byHost holds each service of p.services
				if s := p.byHost[h]; s != nil {
					out = appendServicePorts(out, s)
				}
				continue
			}
			for _, s := range p.services {
				if hostMatches(h, s.fqdn) {
					out = appendServicePorts(out, s)
				}
			}
		}
	}
	for _, key := range v.gateways {
		for _, srv := range p.gateways[key].servers {
			out = append(out, arrival{srv.port, "a server port of Gateway " + key})
		}
	}
	return out
}

// appendServicePorts appends the ports of s as arrivals.
func appendServicePorts(out []arrival, s *service) []arrival {
	for _, pt := range s.ports {
		out = append(out, arrival{pt.number, "a port of " + s.fqdn})
	}
	return out
}

// checkRouteDestination checks a route destination against the registry.
// from are the ports traffic arrives on: with no destination port, each
// must exist on the destination (or the destination must have a single
// port).
func (p *Policy) checkRouteDestination(r *reporter, d routeDest, from []arrival) bool {
	s := p.lookupService(d.host)
	if s == nil && p.droppedHosts[d.host] {
		return false // its ServiceEntry is already reported: say it once
	}
	if s == nil {
		r.errorf(CodeUnknownHost, d.path+".destination.host", "host %s is not declared by any ServiceEntry or Kubernetes Service", d.host)
		return false
	}
	ok := true
	if d.subset != "" && !s.hasSubset(d.subset) {
		r.errorf(CodeUnknownSubset, d.path+".destination.subset", "subset %q is not defined in any DestinationRule for host %s", d.subset, d.host)
		ok = false
	}
	switch {
	case d.port > 65535:
		ok = false // reported by checkPort
	case d.port != 0 && s.droppedPorts[d.port] && !s.hasPort(d.port):
		ok = false // declared with an error already reported: say it once
	case d.port != 0:
		if !s.hasPort(d.port) {
			r.errorf(CodeUnknownPort, d.path+".destination.port.number", "port %d is not a port of %s (ports: %s)", d.port, d.host, s.portList())
			ok = false
		}
	case len(s.ports) > 1:
		if len(from) == 0 {
			r.errorf(CodeUnknownPort, d.path+".destination", "destination port is required: %s has more than one port (%s)", d.host, s.portList())
			return false
		}
		for _, a := range from {
			if _, found := s.destPort(a.port, d.port); !found {
				r.errorf(CodeUnknownPort, d.path+".destination", "destination port is required: %s has ports %s, none of them %d (%s)", d.host, s.portList(), a.port, a.what)
				return false
			}
		}
	}
	return ok
}

func (s *service) hasSubset(name string) bool {
	for _, ss := range s.subsets {
		if ss.name == name {
			return true
		}
	}
	return false
}

func (s *service) hasPort(n uint32) bool {
	for _, p := range s.ports {
		if p.number == n {
			return true
		}
	}
	return false
}

// destPort is the port of s a route uses for traffic that arrived for port
// from: the explicit port, else the same port number, else s's only port.
func (s *service) destPort(from, explicit uint32) (uint32, bool) {
	switch {
	case explicit != 0:
		return explicit, s.hasPort(explicit)
	case s.hasPort(from):
		return from, true
	case len(s.ports) == 1:
		return s.ports[0].number, true
	}
	return 0, false
}

func (s *service) portList() string {
	parts := make([]string, len(s.ports))
	for i, p := range s.ports {
		parts[i] = strconv.FormatUint(uint64(p.number), 10)
	}
	return strings.Join(parts, ", ")
}

func sortPorts(ports []servicePort) {
	sort.Slice(ports, func(i, j int) bool { return ports[i].number < ports[j].number })
}

func sortSubsets(subsets []subset) {
	sort.Slice(subsets, func(i, j int) bool { return subsets[i].name < subsets[j].name })
}

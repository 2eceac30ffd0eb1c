package compiler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// link validates every object, builds the service registry from the valid
// parts and checks references across objects: hosts declared twice,
// VirtualService and DestinationRule hosts, destinations (host, subset,
// port), and which WorkloadEntries a ServiceEntry selects.
func (p *Policy) link(diags *Diagnostics) {
	p.byHost = map[string]*service{}
	p.linkRegistry()
	owner := map[string]*ServiceEntry{}
	for _, se := range p.ServiceEntries {
		r := newReporter(&se.Meta, KindServiceEntry, diags)
		for _, s := range checkServiceEntry(r, se) {
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
				s.selected = append(s.selected, ep)
				selected = true
			}
		}
		if !selected {
			r.report(CodeUnselectedWorkloadEntry, SeverityInfo, "spec.labels",
				"no ServiceEntry or Kubernetes Service in namespace %s selects this WorkloadEntry; it receives no traffic", we.Namespace)
		}
	}
}

// linkDestinationRules attaches each DestinationRule's subsets and
// traffic policy to its host.
func (p *Policy) linkDestinationRules(diags *Diagnostics) {
	first := map[string]*DestinationRule{} // by host, declared or not
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
		s := p.byHost[host]
		switch {
		case s == nil:
			r.warnf(CodeUnusedDestinationRule, "spec.host", "host %s is not declared by any ServiceEntry or Kubernetes Service; the DestinationRule has no effect", host)
		default:
			s.rule, s.subsets, s.policy = dr, subsets, policy
			p.checkSubsetWorkloads(r, dr, s)
		}
	}
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
}

// bindVirtualService attaches a root VirtualService to the services of its
// hosts (when bound to sidecars) and checks its hosts against the servers
// of its gateways.
func (p *Policy) bindVirtualService(r *reporter, v *virtualService) {
	spec := v.obj.Spec
	for _, h := range v.hosts {
		path := hostPath(spec.GetHosts(), v.obj.Namespace, h)
		if v.mesh && !isWildcardHost(h) {
			p.bindMeshHost(r, v, h, path)
		}
		for i, key := range v.gateways {
			gw := p.gateways[key]
			found := false
			for _, srv := range gw.servers {
				if serverHostFor(srv, v.obj.Namespace, h) != "" {
					found = true
					break
				}
			}
			if !found {
				r.warnf(CodeHostNotInGateway, path, "host %s is not among the hosts of Gateway %s (%s); the gateway does not route it",
					h, key, gatewayRef(spec.GetGateways(), i))
			}
		}
	}
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
			if s := p.byHost[h]; s != nil {
				for _, pt := range s.ports {
					out = append(out, arrival{pt.number, "a port of " + s.fqdn})
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

// checkRouteDestination checks a route destination against the registry.
// from are the ports traffic arrives on: with no destination port, each
// must exist on the destination (or the destination must have a single
// port).
func (p *Policy) checkRouteDestination(r *reporter, d routeDest, from []arrival) bool {
	s := p.byHost[d.host]
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

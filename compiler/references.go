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
	owner := map[string]*ServiceEntry{}
	for _, se := range p.ServiceEntries {
		r := newReporter(&se.Meta, KindServiceEntry, diags)
		for _, s := range checkServiceEntry(r, se) {
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
	p.linkVirtualServices(diags)
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
				"no ServiceEntry in namespace %s selects this WorkloadEntry; it receives no traffic", we.Namespace)
		}
	}
}

// linkDestinationRules attaches each DestinationRule's subsets to its host.
func (p *Policy) linkDestinationRules(diags *Diagnostics) {
	for _, dr := range p.DestinationRules {
		r := newReporter(&dr.Meta, KindDestinationRule, diags)
		host, subsets, ok := checkDestinationRule(r, dr)
		if !ok {
			continue
		}
		s := p.byHost[host]
		switch {
		case s == nil:
			r.warnf(CodeUnusedDestinationRule, "spec.host", "host %s is not declared by any ServiceEntry; the DestinationRule has no effect", host)
		case s.rule != nil:
			r.errorf(CodeConflictingDestinationRules, "spec.host", "host %s already has DestinationRule %s/%s (%s); only one DestinationRule per host is supported",
				host, s.rule.Namespace, s.rule.Name, s.rule.Object.At("spec.host"))
		default:
			s.rule, s.subsets = dr, subsets
		}
	}
}

// linkVirtualServices attaches each VirtualService's routes to its hosts and
// checks every destination.
func (p *Policy) linkVirtualServices(diags *Diagnostics) {
	for _, vs := range p.VirtualServices {
		r := newReporter(&vs.Meta, KindVirtualService, diags)
		hosts, routes := checkVirtualService(r, vs)
		var own []*service // services whose traffic this VirtualService routes
		for _, h := range hosts {
			s := p.byHost[h]
			path := hostPath(vs.Spec.GetHosts(), vs.Namespace, h)
			switch {
			case s == nil:
				r.warnf(CodeUnusedVirtualServiceHost, path, "host %s is not declared by any ServiceEntry; these rules have no effect for it", h)
			case s.vs != nil:
				r.errorf(CodeConflictingVirtualServices, path, "host %s already has VirtualService %s/%s (%s); only one VirtualService per host is supported",
					h, s.vs.Namespace, s.vs.Name, s.vs.Object.At("spec.hosts"))
			default:
				own = append(own, s)
			}
		}
		for i := range routes {
			for _, d := range routes[i].dests {
				if !p.checkDestination(r, d, hosts) {
					routes[i].valid = false
				}
			}
		}
		for _, s := range own {
			s.vs, s.routes = vs, routes
		}
	}
}

// checkDestination checks a route destination against the registry.
// vsHosts are the VirtualService's hosts: with no destination port, each of
// their ports must exist on the destination (or the destination must have a
// single port).
func (p *Policy) checkDestination(r *reporter, d routeDest, vsHosts []string) bool {
	s := p.byHost[d.host]
	if s == nil {
		r.errorf(CodeUnknownHost, d.path+".destination.host", "host %s is not declared by any ServiceEntry", d.host)
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
		var from []*service
		for _, h := range vsHosts {
			if hs := p.byHost[h]; hs != nil {
				from = append(from, hs)
			}
		}
		if len(from) == 0 {
			r.errorf(CodeUnknownPort, d.path+".destination", "destination port is required: %s has more than one port (%s)", d.host, s.portList())
			return false
		}
		for _, hs := range from {
			for _, pt := range hs.ports {
				if _, found := s.destPort(pt.number, d.port); !found {
					r.errorf(CodeUnknownPort, d.path+".destination", "destination port is required: %s has ports %s, none of them %d (a port of %s)", d.host, s.portList(), pt.number, hs.fqdn)
					return false
				}
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

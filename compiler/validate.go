package compiler

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"
)

// This file checks one object at a time and returns its valid parts,
// normalized. Checks across objects are in references.go.

// protocols gitmesh compiles (docs/xds-conventions.md).
const (
	protoHTTP  = "HTTP"
	protoHTTP2 = "HTTP2"
	protoGRPC  = "GRPC"
	protoTCP   = "TCP"
)

// checkHosts validates a hosts list (spec.hosts) and returns the valid FQDNs.
func checkHosts(r *reporter, path string, hosts []string) []string {
	if len(hosts) == 0 {
		r.errorf(CodeMissingField, path, "at least one host is required")
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for i, h := range hosts {
		p := fmt.Sprintf("%s[%d]", path, i)
		fqdn, ok := checkHost(r, p, h)
		if !ok {
			continue
		}
		if seen[fqdn] {
			r.errorf(CodeDuplicateEntry, p, "host %s is listed twice", fqdn)
			continue
		}
		seen[fqdn] = true
		out = append(out, fqdn)
	}
	return out
}

// checkHost validates one host and returns its FQDN, lower-cased: a DNS
// name or a wildcard "*.suffix" (as Istio's ValidateWildcardDomain).
// Upper case is accepted, as Istio accepts it, and folded: DNS names and
// Envoy's domain matching are case-insensitive. The full wildcard "*" is
// not a host here (Istio rejects it for ServiceEntries and destinations;
// callers that take it check it first).
func checkHost(r *reporter, path, h string) (string, bool) {
	l := strings.ToLower(h)
	switch {
	case h == "":
		r.errorf(CodeMissingField, path, "host is required")
	case h == "*":
		r.errorf(CodeInvalidHost, path, "host \"*\" is not allowed here; name a host or a wildcard such as \"*.example.com\"")
	case isWildcardHost(l):
		return l, true
	case !isDNSName(l):
		r.errorf(CodeInvalidHost, path, "host %q is not a valid DNS name or wildcard (*.example.com)", h)
	default:
		return resolveHost(l, r.ns), true
	}
	return "", false
}

// checkPort validates a port number (1-65535).
func checkPort(r *reporter, path string, n uint32) bool {
	if n == 0 || n > 65535 {
		r.errorf(CodeInvalidPort, path, "port %d is not in 1-65535", n)
		return false
	}
	return true
}

// checkAddress validates an endpoint address: an IP, or a host name when
// dnsOK.
func checkAddress(r *reporter, path, addr string, dnsOK bool) bool {
	switch {
	case addr == "":
		r.errorf(CodeMissingField, path, "address is required")
	case strings.HasPrefix(addr, "unix://"):
		r.errorf(CodeUnsupportedValue, path, "unix domain socket address %q is not supported yet", addr)
	case isIP(addr):
		return true
	case dnsOK && isDNSName(addr):
		return true
	case dnsOK:
		r.errorf(CodeInvalidHost, path, "address %q is neither an IP address nor a DNS name", addr)
	default:
		r.errorf(CodeInvalidHost, path, "address %q is not an IP address (host names need a ServiceEntry with resolution DNS)", addr)
	}
	return false
}

// checkEndpointPorts validates a WorkloadEntry ports map.
func checkEndpointPorts(r *reporter, path string, ports map[string]uint32) map[string]uint32 {
	out := map[string]uint32{}
	for _, name := range sortedKeys(ports) {
		if !isPortName(name) {
			r.errorf(CodeInvalidValue, path+"."+name, "invalid port name %q: it must be a DNS label (letters, digits and '-', at most 63)", name)
			continue
		}
		if checkPort(r, path+"."+name, ports[name]) {
			out[name] = ports[name]
		}
	}
	return out
}

// checkServiceEntry validates a ServiceEntry and returns one service per
// valid host (nil when it cannot describe a service).
func checkServiceEntry(r *reporter, se *ServiceEntry) []*service {
	spec := se.Spec
	hosts := checkHosts(r, "spec.hosts", spec.GetHosts())

	res := spec.GetResolution()
	resOK := true
	switch res {
	case networking.ServiceEntry_NONE, networking.ServiceEntry_STATIC, networking.ServiceEntry_DNS:
	default:
		r.errorf(CodeUnsupportedValue, "spec.resolution", "resolution %s is not supported yet (NONE, STATIC and DNS are)", res)
		resOK = false
	}

	var ports []servicePort
	numbers, names, dropped := map[uint32]bool{}, map[string]bool{}, map[uint32]bool{}
	for i, pt := range spec.GetPorts() {
		p := fmt.Sprintf("spec.ports[%d]", i)
		ok := checkPort(r, p+".number", pt.GetNumber())
		if ok && numbers[pt.GetNumber()] {
			r.errorf(CodeInvalidPort, p+".number", "port %d is listed twice", pt.GetNumber())
			ok = false
		}
		switch {
		case pt.GetName() == "":
			r.errorf(CodeMissingField, p+".name", "port name is required")
			ok = false
		case !isPortName(pt.GetName()):
			r.errorf(CodeInvalidValue, p+".name", "invalid port name %q: it must be a DNS label (letters, digits and '-', at most 63)", pt.GetName())
			ok = false
		case names[pt.GetName()]:
			r.errorf(CodeDuplicateEntry, p+".name", "port name %q is listed twice", pt.GetName())
			ok = false
		}
		if pt.GetTargetPort() != 0 && !checkPort(r, p+".targetPort", pt.GetTargetPort()) {
			ok = false
		}
		proto, protoOK := checkProtocol(r, p, pt.GetProtocol(), pt.GetName())
		if !ok || !protoOK {
			if n := pt.GetNumber(); n > 0 && n <= 65535 && !numbers[n] {
				dropped[n] = true // reported here; references to it must not be reported again
			}
			continue
		}
		numbers[pt.GetNumber()] = true
		names[pt.GetName()] = true
		ports = append(ports, servicePort{number: pt.GetNumber(), name: pt.GetName(), protocol: proto, targetPort: pt.GetTargetPort()})
	}
	sortPorts(ports)

	var selector map[string]string
	if ws := spec.GetWorkloadSelector(); ws != nil {
		checkSelectorLabels(r, "spec.workloadSelector.labels", ws.GetLabels())
		selector = map[string]string{}
		for k, v := range ws.GetLabels() {
			selector[k] = v
		}
		if len(spec.GetEndpoints()) > 0 {
			r.errorf(CodeConflictingFields, "spec.workloadSelector", "workloadSelector and endpoints cannot both be set")
		}
		if res == networking.ServiceEntry_DNS {
			r.errorf(CodeUnsupportedValue, "spec.workloadSelector", "workloadSelector with resolution DNS is not supported yet (use STATIC)")
		}
	}

	if res == networking.ServiceEntry_NONE && len(spec.GetEndpoints()) > 0 {
		r.errorf(CodeConflictingFields, "spec.endpoints", "endpoints cannot be set with resolution NONE (use STATIC or DNS)")
	}
	if res == networking.ServiceEntry_DNS && len(spec.GetEndpoints()) == 0 {
		for i, h := range spec.GetHosts() {
			if strings.Contains(h, "*") {
				r.errorf(CodeInvalidHost, fmt.Sprintf("spec.hosts[%d]", i), "wildcard host %q needs endpoints with resolution DNS: there is no name to resolve", h)
			}
		}
	}
	var eps []endpoint
	for i, we := range spec.GetEndpoints() {
		p := fmt.Sprintf("spec.endpoints[%d]", i)
		if !checkAddress(r, p+".address", we.GetAddress(), res == networking.ServiceEntry_DNS) {
			continue
		}
		checkLabels(r, p+".labels", we.GetLabels())
		eps = append(eps, endpoint{
			address:  we.GetAddress(),
			ports:    checkEndpointPorts(r, p+".ports", we.GetPorts()),
			labels:   copyLabels(we.GetLabels()),
			weight:   max(we.GetWeight(), 1),
			workload: se.Name,
			ns:       se.Namespace,
			sa:       we.GetServiceAccount(),
		})
	}

	export := checkExportTo(r, "spec.exportTo", spec.GetExportTo(), se.Namespace)
	addresses := checkVIPs(r, spec.GetAddresses())
	if !resOK {
		return nil
	}
	var out []*service
	for _, fqdn := range hosts {
		s := &service{
			fqdn: fqdn, name: fqdn, namespace: se.Namespace, entry: se, export: export,
			resolution: res, ports: ports, endpoints: eps, selector: selector, droppedPorts: dropped,
			addresses: addresses,
		}
		if name, _, ok := splitLocal(fqdn); ok {
			s.name, s.local = name, true
		}
		out = append(out, s)
	}
	return out
}

// checkProtocol normalizes a port protocol. An empty protocol is derived
// from the port name's prefix, as Istio does ("grpc-api" is GRPC, "http2"
// HTTP2); otherwise it is HTTP.
func checkProtocol(r *reporter, path, protocol, name string) (string, bool) {
	p := strings.ToUpper(protocol)
	field := path + ".protocol"
	if p == "" {
		field = path + ".name"
		prefix, _, _ := strings.Cut(strings.ToUpper(name), "-")
		switch prefix {
		case protoGRPC, protoHTTP2:
			p = prefix
		case "HTTPS", "TCP", "TLS", "UDP", "MONGO", "REDIS", "MYSQL", "GRPC-WEB":
			p = prefix
		default:
			p = protoHTTP
		}
	}
	switch p {
	case protoHTTP, protoHTTP2, protoGRPC, protoTCP:
		return p, true
	case "HTTPS", "TLS", "UDP", "MONGO", "REDIS", "MYSQL", "GRPC-WEB", "HBONE":
		r.errorf(CodeUnsupportedValue, field, "protocol %s is not supported yet (HTTP, HTTP2, GRPC and TCP are)", p)
	default:
		r.errorf(CodeInvalidValue, field, "protocol %q is not a protocol Istio knows (HTTP, HTTP2, GRPC, HTTPS, TCP, TLS, ...)", protocol)
	}
	return "", false
}

// checkWorkloadEntry validates a WorkloadEntry and returns it as an endpoint.
func checkWorkloadEntry(r *reporter, we *WorkloadEntry) (endpoint, bool) {
	spec := we.Spec
	ports := checkEndpointPorts(r, "spec.ports", spec.GetPorts())
	checkLabels(r, "spec.labels", spec.GetLabels())
	// A WorkloadEntry may name a host (Istio allows an FQDN for the DNS
	// ServiceEntries that select it); linkWorkloadEntries checks that
	// only DNS services select such an entry.
	if !checkAddress(r, "spec.address", spec.GetAddress(), true) {
		return endpoint{}, false
	}
	return endpoint{
		address: spec.GetAddress(), ports: ports, labels: copyLabels(spec.GetLabels()),
		weight: max(spec.GetWeight(), 1), workload: we.Name, ns: we.Namespace,
		sa: spec.GetServiceAccount(),
	}, true
}

// checkDestinationRule validates a DestinationRule and returns its host,
// valid subsets and top-level traffic policy.
func checkDestinationRule(r *reporter, dr *DestinationRule) (string, []subset, *networking.TrafficPolicy, bool) {
	host, ok := "*", true // a mesh-wide default for every host, as Istio allows
	if dr.Spec.GetHost() != "*" {
		host, ok = checkHost(r, "spec.host", dr.Spec.GetHost())
	}
	policy := dr.Spec.GetTrafficPolicy()
	if !checkTrafficPolicy(r, "spec.trafficPolicy", policy) {
		policy = nil
	}
	var subsets []subset
	seen := map[string]bool{}
	for i, s := range dr.Spec.GetSubsets() {
		p := fmt.Sprintf("spec.subsets[%d].name", i)
		switch {
		case s.GetName() == "":
			r.errorf(CodeMissingField, p, "subset name is required")
		case !isDNSLabel(s.GetName()):
			r.errorf(CodeInvalidValue, p, "subset name %q must be a DNS label (a-z, 0-9 and '-')", s.GetName())
		case seen[s.GetName()]:
			r.errorf(CodeDuplicateEntry, p, "subset %q is defined twice", s.GetName())
		default:
			seen[s.GetName()] = true
			sp := s.GetTrafficPolicy()
			if !checkTrafficPolicy(r, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), sp) {
				sp = nil
			}
			checkLabels(r, fmt.Sprintf("spec.subsets[%d].labels", i), s.GetLabels())
			subsets = append(subsets, subset{name: s.GetName(), labels: copyLabels(s.GetLabels()), policy: sp})
		}
	}
	sortSubsets(subsets)
	return host, subsets, policy, ok
}

func copyLabels(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// checkLabels validates workload labels (a WorkloadEntry's, an endpoint's,
// a subset's) as Kubernetes label keys and values, as Istio does.
func checkLabels(r *reporter, path string, labels map[string]string) bool {
	ok := true
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		switch {
		case !isLabelKey(k):
			r.errorf(CodeInvalidValue, path+"."+k, "invalid label key %q: it must be a Kubernetes label name (an optional DNS prefix and '/', then letters, digits, '-', '_' and '.')", k)
			ok = false
		case !isLabelValue(v):
			r.errorf(CodeInvalidValue, path+"."+k, "invalid label value %q: a label value is empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", v)
			ok = false
		}
	}
	return ok
}

// checkSelectorLabels validates a workloadSelector's labels as Istio does:
// keys must not be empty and neither keys nor values may hold a wildcard
// (a selector matches exact values only).
func checkSelectorLabels(r *reporter, path string, labels map[string]string) bool {
	ok := true
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		switch {
		case k == "":
			r.errorf(CodeInvalidValue, path, "empty label key is not supported in a selector: %q", k+"="+v)
			ok = false
		case strings.Contains(k, "*") || strings.Contains(v, "*"):
			r.errorf(CodeInvalidValue, path+"."+k, "wildcard is not supported in a selector: %q (a selector matches exact label values)", k+"="+v)
			ok = false
		}
	}
	return ok
}

package compiler

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1"
)

// This file decides what a proxy sees: exportTo (which namespaces an
// object is visible to) and Sidecar resources (which hosts a sidecar's
// outbound listener routes, and what happens to unknown hosts).

// exportTo is the set of namespaces an object is visible to.
type exportTo struct {
	all        bool
	namespaces []string // sorted; used when !all (empty: visible nowhere)
}

// checkExportTo validates spec.exportTo of an object in namespace ns.
// An empty list exports to every namespace (Istio's default); "." is ns,
// "*" every namespace, "~" none.
func checkExportTo(r *reporter, path string, list []string, ns string) exportTo {
	if len(list) == 0 {
		return exportTo{all: true}
	}
	var e exportTo
	seen := map[string]bool{}
	for i, x := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case x == "*":
			e.all = true
		case x == "~":
			if len(list) > 1 {
				r.errorf(CodeConflictingFields, p, `"~" (export to no namespace) cannot be listed with other namespaces`)
			}
		case x == ".":
			x = ns
			fallthrough
		default:
			if !isDNSLabel(x) {
				r.errorf(CodeInvalidValue, p, "%q is not a namespace name, \".\", \"*\" or \"~\"", x)
				continue
			}
			if !seen[x] {
				seen[x] = true
				e.namespaces = append(e.namespaces, x)
			}
		}
	}
	sort.Strings(e.namespaces)
	return e
}

// visibleTo reports whether the object is visible to proxies of ns.
func (e exportTo) visibleTo(ns string) bool {
	if e.all {
		return true
	}
	for _, n := range e.namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// sidecarScope is a valid Sidecar.
type sidecarScope struct {
	obj      *Sidecar
	selector map[string]string // nil: every workload of the namespace
	// egress are the spec.egress[].hosts, as namespace/host filters; nil
	// when the Sidecar has no egress (every host is visible).
	egress       []hostFilter
	hasEgress    bool
	registryOnly bool // outboundTrafficPolicy.mode REGISTRY_ONLY
}

// hostFilter is a "namespace/dnsName" host filter of a Sidecar egress or
// a Gateway server: namespace "*" matches any namespace; dnsName may be
// "*" or "*.suffix".
type hostFilter struct {
	namespace string
	host      string
}

// matches reports whether a host declared in namespace ns passes the
// filter.
func (f hostFilter) matches(ns, host string) bool {
	if f.namespace != "*" && f.namespace != ns {
		return false
	}
	return hostMatches(f.host, host)
}

// hostMatches reports whether pattern ("*", "*.suffix" or a name) matches
// host (a name or itself a wildcard that pattern covers).
func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*" || pattern == host:
		return true
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:] // ".example.com"
		if strings.HasPrefix(host, "*.") {
			return strings.HasSuffix(host[1:], suffix)
		}
		return strings.HasSuffix(host, suffix)
	}
	return false
}

// checkHostFilter validates a "namespace/dnsName" host filter written in
// namespace ns. A filter without a namespace means any namespace ("*/")
// when anyNS, else ns.
func checkHostFilter(r *reporter, path, s, ns string, anyNS bool) (hostFilter, bool) {
	f := hostFilter{namespace: "*", host: s}
	if !anyNS {
		f.namespace = ns
	}
	if before, after, ok := strings.Cut(s, "/"); ok {
		f.namespace, f.host = before, after
		switch {
		case before == ".":
			f.namespace = ns
		case before == "~":
			return f, false // matches nothing
		case before != "*" && !isDNSLabel(before):
			r.errorf(CodeInvalidValue, path, "%q is not a namespace name, \".\", \"*\" or \"~\"", before)
			return f, false
		}
	}
	f.host = strings.ToLower(f.host) // DNS names are case-insensitive; Istio accepts upper case
	if f.host != "*" && !isWildcardHost(f.host) && !isDNSName(f.host) {
		r.errorf(CodeInvalidHost, path, "host %q is not a valid DNS name or wildcard", f.host)
		return f, false
	}
	return f, true
}

// checkSidecar validates a Sidecar.
func checkSidecar(r *reporter, sc *Sidecar) *sidecarScope {
	spec := sc.Spec
	out := &sidecarScope{obj: sc}
	if ws := spec.GetWorkloadSelector(); ws != nil {
		checkSelectorLabels(r, "spec.workloadSelector.labels", ws.GetLabels())
		out.selector = copyLabels(ws.GetLabels())
		if out.selector == nil {
			out.selector = map[string]string{}
		}
	}
	for i, e := range spec.GetEgress() {
		out.hasEgress = true
		path := fmt.Sprintf("spec.egress[%d]", i)
		if len(e.GetHosts()) == 0 {
			r.errorf(CodeMissingField, path+".hosts", "at least one host is required")
		}
		for j, h := range e.GetHosts() {
			if f, ok := checkHostFilter(r, fmt.Sprintf("%s.hosts[%d]", path, j), h, sc.Namespace, false); ok {
				out.egress = append(out.egress, f)
			}
		}
	}
	if m := spec.GetOutboundTrafficPolicy(); m != nil {
		out.registryOnly = m.GetMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY
	}
	return out
}

// linkSidecars validates the Sidecars and reports two that apply to the
// same workloads: two without a workloadSelector in one namespace, or two
// with equal selectors.
func (p *Policy) linkSidecars(diags *Diagnostics) {
	seen := map[string]*Sidecar{}
	for _, sc := range p.Sidecars {
		r := newReporter(&sc.Meta, KindSidecar, diags)
		s := checkSidecar(r, sc)
		key := sc.Namespace + "|"
		field := "metadata.name"
		if s.selector != nil {
			key += formatSelector(s.selector)
			field = "spec.workloadSelector"
		}
		if first, ok := seen[key]; ok {
			r.errorf(CodeConflictingSidecars, field, "Sidecar %s/%s (%s) already applies to the same workloads; only one Sidecar may select a workload",
				first.Namespace, first.Name, first.Object.Origin)
			continue
		}
		seen[key] = sc
		p.sidecars = append(p.sidecars, s)
	}
}

func formatSelector(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// sidecarFor returns the Sidecar that applies to a sidecar proxy in ns
// with labels: one of its namespace whose selector matches, else its
// namespace's Sidecar without a selector, else the root namespace's; nil
// when none does.
func (p *Policy) sidecarFor(ns string, labels map[string]string) *sidecarScope {
	var nsDefault, rootDefault *sidecarScope
	for _, s := range p.sidecars {
		switch {
		case s.obj.Namespace == ns && s.selector != nil:
			if labelsMatch(s.selector, labels) {
				return s
			}
		case s.obj.Namespace == ns:
			nsDefault = s
		case s.obj.Namespace == DefaultRootNamespace && s.selector == nil:
			rootDefault = s
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

// inScope reports whether a sidecar with this Sidecar sees a host
// declared in namespace ns.
func (s *sidecarScope) inScope(ns, host string) bool {
	if s == nil || !s.hasEgress {
		return true
	}
	for _, f := range s.egress {
		if f.matches(ns, host) {
			return true
		}
	}
	return false
}

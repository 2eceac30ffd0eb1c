package compiler

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
)

// This file merges delegate VirtualServices into their roots, as Istio
// does (pilot/pkg/model/virtualservice.go): a root route with
// `delegate: {name, namespace}` is replaced by the delegate's routes, each
// with its matches merged with the root route's and the root's rewrite,
// timeout, retries, fault, mirror, CORS and headers where it sets none. A
// delegate route whose match conflicts with the root's is left out.

// mergeDelegates replaces every delegating route of roots and returns the
// keys of the delegates in use.
func (p *Policy) mergeDelegates(roots []*virtualService, delegates map[string]*virtualService) map[string]bool {
	used := map[string]bool{}
	for _, d := range delegates {
		for _, rt := range d.http {
			if rt.spec.GetDelegate() != nil {
				rt.owner.errorf(CodeUnsupportedValue, rt.path+".delegate", "a delegate VirtualService cannot delegate again")
				rt.valid = false
			}
		}
	}
	for _, v := range roots {
		var out []*httpRoute
		for _, rt := range v.http {
			ref := rt.spec.GetDelegate()
			if ref == nil {
				out = append(out, rt)
				continue
			}
			ns := ref.GetNamespace()
			if ns == "" {
				ns = v.obj.Namespace
			}
			key := ns + "/" + ref.GetName()
			d := delegates[key]
			switch {
			case ref.GetName() == "":
				continue // reported by checkHTTPRoute
			case d == nil:
				rt.owner.errorf(CodeUnknownDelegate, rt.path+".delegate", "delegate VirtualService %s is not defined (a VirtualService without hosts)", key)
				continue
			case !d.export.visibleTo(v.obj.Namespace):
				rt.owner.errorf(CodeUnknownDelegate, rt.path+".delegate", "delegate VirtualService %s is not exported to namespace %s", key, v.obj.Namespace)
				continue
			}
			used[key] = true
			for _, sub := range d.http {
				if sub.spec.GetDelegate() != nil {
					continue
				}
				merged := mergeHTTPRoute(rt.spec, sub.spec)
				if merged == nil {
					sub.owner.warnf(CodeDelegateConflict, sub.path+".match", "conflicts with the match of the route that delegates to it (VirtualService %s/%s %s); this route is left out",
						v.obj.Namespace, v.obj.Name, rt.path)
					continue
				}
				m := &httpRoute{
					valid: rt.valid && sub.valid, path: sub.path, owner: sub.owner, spec: merged,
					dests: sub.dests, mirrors: sub.mirrors,
				}
				if sub.spec.GetMirror() == nil && len(sub.spec.GetMirrors()) == 0 {
					m.mirrors = rt.mirrors
				}
				out = append(out, m)
			}
		}
		v.http = out
	}
	return used
}

// mergeHTTPRoute merges a delegate route into its root route, or returns
// nil when their matches conflict. Neither input is modified.
func mergeHTTPRoute(root, delegate *networking.HTTPRoute) *networking.HTTPRoute {
	matches, conflict := mergeHTTPMatchRequests(root.GetMatch(), delegate.GetMatch())
	if conflict {
		return nil
	}
	out := proto.Clone(delegate).(*networking.HTTPRoute)
	out.Match = matches
	switch {
	case out.Name == "":
		out.Name = root.GetName()
	case root.GetName() != "":
		out.Name = root.GetName() + "-" + out.Name
	}
	if out.Rewrite == nil {
		out.Rewrite = root.GetRewrite()
	}
	if out.Timeout == nil {
		out.Timeout = root.GetTimeout()
	}
	if out.Retries == nil {
		out.Retries = root.GetRetries()
	}
	if out.Fault == nil {
		out.Fault = root.GetFault()
	}
	if out.Mirror == nil && len(out.Mirrors) == 0 {
		out.Mirror, out.Mirrors = root.GetMirror(), root.GetMirrors()
		if out.MirrorPercentage == nil {
			out.MirrorPercentage = root.GetMirrorPercentage()
		}
	}
	if out.CorsPolicy == nil {
		out.CorsPolicy = root.GetCorsPolicy()
	}
	if out.Headers == nil {
		out.Headers = root.GetHeaders()
	}
	return out
}

// mergeHTTPMatchRequests merges the matches of a root route and a delegate
// route: every delegate match must be compatible with at least one root
// match, and each compatible pair becomes one merged match.
func mergeHTTPMatchRequests(root, delegate []*networking.HTTPMatchRequest) ([]*networking.HTTPMatchRequest, bool) {
	if len(root) == 0 {
		return delegate, false
	}
	if len(delegate) == 0 {
		return root, false
	}
	var out []*networking.HTTPMatchRequest
	for _, sub := range delegate {
		found := false
		for _, rm := range root {
			if matchConflict(rm, sub) {
				continue
			}
			out = append(out, mergeHTTPMatchRequest(rm, sub))
			found = true
		}
		if !found {
			return nil, true
		}
	}
	return out, len(out) == 0
}

func mergeHTTPMatchRequest(root, delegate *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	out := proto.Clone(delegate).(*networking.HTTPMatchRequest)
	switch {
	case out.Name == "":
		out.Name = root.GetName()
	case root.GetName() != "":
		out.Name = root.GetName() + "-" + out.Name
	}
	if out.Uri == nil {
		out.Uri = root.GetUri()
	}
	if out.Scheme == nil {
		out.Scheme = root.GetScheme()
	}
	if out.Method == nil {
		out.Method = root.GetMethod()
	}
	if out.Authority == nil {
		out.Authority = root.GetAuthority()
	}
	out.Headers = mergeMaps(root.GetHeaders(), delegate.GetHeaders())
	out.WithoutHeaders = mergeMaps(root.GetWithoutHeaders(), delegate.GetWithoutHeaders())
	out.QueryParams = mergeMaps(root.GetQueryParams(), delegate.GetQueryParams())
	out.SourceLabels = mergeMaps(root.GetSourceLabels(), delegate.GetSourceLabels())
	if out.Port == 0 {
		out.Port = root.GetPort()
	}
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.GetSourceNamespace()
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.GetGateways()
	}
	return out
}

// mergeMaps returns a copy of a with b's entries set over it (nil when both
// are empty).
func mergeMaps[V any](a, b map[string]V) map[string]V {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make(map[string]V, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// matchConflict reports whether a delegate match (leaf) cannot narrow a
// root match.
func matchConflict(root, leaf *networking.HTTPMatchRequest) bool {
	roots := []*networking.StringMatch{root.GetUri(), root.GetScheme(), root.GetMethod(), root.GetAuthority()}
	leaves := []*networking.StringMatch{leaf.GetUri(), leaf.GetScheme(), leaf.GetMethod(), leaf.GetAuthority()}
	for i := range roots {
		if stringMatchConflict(roots[i], leaves[i]) {
			return true
		}
	}
	for k, v := range leaf.GetHeaders() {
		if stringMatchConflict(root.GetHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetWithoutHeaders() {
		if stringMatchConflict(root.GetWithoutHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetQueryParams() {
		if stringMatchConflict(root.GetQueryParams()[k], v) {
			return true
		}
	}
	if root.GetIgnoreUriCase() != leaf.GetIgnoreUriCase() {
		return true
	}
	if root.GetPort() > 0 && leaf.GetPort() > 0 && root.GetPort() != leaf.GetPort() {
		return true
	}
	if root.GetSourceNamespace() != "" && leaf.GetSourceNamespace() != root.GetSourceNamespace() {
		return true
	}
	for k, v := range leaf.GetSourceLabels() {
		if rv, ok := root.GetSourceLabels()[k]; ok && rv != v {
			return true
		}
	}
	if len(root.GetGateways()) > 0 && len(leaf.GetGateways()) > 0 {
		rg := map[string]bool{}
		for _, g := range root.GetGateways() {
			rg[g] = true
		}
		for _, g := range leaf.GetGateways() {
			if !rg[g] {
				return true
			}
		}
	}
	return false
}

// stringMatchConflict reports whether leaf cannot narrow root: regexes
// only combine with an absent match; an exact root needs the same exact
// leaf; a prefix root needs a leaf starting with it.
func stringMatchConflict(root, leaf *networking.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if root.GetRegex() != "" || leaf.GetRegex() != "" {
		return true
	}
	if exact := root.GetExact(); exact != "" {
		return leaf.GetPrefix() != "" || leaf.GetExact() != exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		if leaf.GetPrefix() != "" {
			return !strings.HasPrefix(leaf.GetPrefix(), prefix)
		}
		if leaf.GetExact() != "" {
			return !strings.HasPrefix(leaf.GetExact(), prefix)
		}
	}
	return true
}

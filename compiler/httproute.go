package compiler

import (
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"
)

// This file translates VirtualService http routes into Envoy routes the
// way Istio's BuildHTTPRoutesForVirtualService and translateRoute do.

// routeCtx says where routes are built for.
type routeCtx struct {
	// port is the port traffic arrived on: the service port (sidecar) or
	// the server port (gateway). Matches on another port are left out; a
	// destination without a port on a multi-port service uses it.
	port uint32
	// gateway is "namespace/name" of the Gateway, "" for sidecars (mesh).
	gateway string
	// tls is set when the listener terminates TLS (redirect defaults).
	tls bool
}

// translateHTTPRoutes translates routes in order, one Envoy route per
// match that applies to this proxy and port; after a catch-all (a rule
// without match, or a match of every request) nothing more is emitted, as
// routes after it could never match. Invalid routes are left out.
func (b *builder) translateHTTPRoutes(routes []*httpRoute, ctx routeCtx) []*routev3.Route {
	var out []*routev3.Route
	for _, rt := range routes {
		if !rt.valid {
			continue
		}
		if len(rt.spec.GetMatch()) == 0 {
			if r := b.translateRoute(rt, nil, ctx); r != nil {
				out = append(out, r)
			}
			break
		}
		catchAll := false
		for _, m := range rt.spec.GetMatch() {
			if r := b.translateRoute(rt, m, ctx); r != nil {
				out = append(out, r)
				if isCatchAllRoute(r) {
					catchAll = true
					break
				}
			}
		}
		if catchAll {
			break
		}
	}
	return out
}

// translateRoute translates one rule for one of its matches (nil: the
// rule has none), or returns nil when the match does not apply here or a
// destination does not resolve (which validation reports).
func (b *builder) translateRoute(rt *httpRoute, m *networking.HTTPMatchRequest, ctx routeCtx) *routev3.Route {
	in := rt.spec
	if m != nil && m.GetPort() != 0 && m.GetPort() != ctx.port {
		return nil
	}
	if !b.sourceMatches(m, ctx.gateway, rt.owner.ns) {
		return nil
	}
	name := in.GetName()
	if m != nil && m.GetName() != "" {
		name += "." + m.GetName()
	}
	out := &routev3.Route{Name: name, Match: translateRouteMatch(m)}
	ops := translateHeaders(in.GetHeaders())
	out.RequestHeadersToAdd, out.RequestHeadersToRemove = ops.requestAdd, ops.requestRemove
	out.ResponseHeadersToAdd, out.ResponseHeadersToRemove = ops.responseAdd, ops.responseRemove

	switch {
	case in.GetRedirect() != nil:
		out.Action = redirectAction(in.GetRedirect(), ctx)
	case in.GetDirectResponse() != nil:
		out.Action = directResponseAction(in.GetDirectResponse())
	default:
		if !b.forwardAction(out, rt, ctx, ops.authority) {
			return nil
		}
	}
	if in.GetFault() != nil || in.GetCorsPolicy() != nil {
		out.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	if f := in.GetFault(); f != nil {
		if hf := translateFault(f); hf != nil {
			out.TypedPerFilterConfig[faultFilterName] = b.any(hf)
		}
	}
	if c := in.GetCorsPolicy(); c != nil {
		out.TypedPerFilterConfig[corsFilterName] = b.any(translateCORS(c))
	}
	return out
}

// forwardAction sets out's action to forward to rt's destinations, with
// its timeout, rewrite, mirrors, hash policies and retry policy. It
// returns false when a destination does not resolve.
func (b *builder) forwardAction(out *routev3.Route, rt *httpRoute, ctx routeCtx, authority string) bool {
	in := rt.spec
	action := &routev3.RouteAction{}
	setTimeout(action, in.GetTimeout())
	out.Action = &routev3.Route_Route{Route: action}
	if rw := in.GetRewrite(); rw != nil {
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: rr.GetMatch()},
				Substitution: rr.GetRewrite(),
			}
		} else if uri := rw.GetUri(); uri != "" {
			action.PrefixRewrite = uri
		}
		if rw.GetAuthority() != "" {
			authority = rw.GetAuthority()
		}
	}
	if authority != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
	}
	for _, mr := range rt.mirrors {
		frac := mirrorFraction(mr.percent)
		if frac == nil {
			continue
		}
		cluster, _, ok := b.destCluster(mr, ctx.port)
		if !ok {
			return false
		}
		action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster: cluster, RuntimeFraction: frac, TraceSampled: wrapperspb.Bool(false),
		})
	}
	hashed := false
	if len(rt.dests) == 1 {
		d := rt.dests[0]
		cluster, ds, ok := b.destCluster(d, ctx.port)
		if !ok {
			return false
		}
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cluster}
		if d.headers != nil {
			ops := translateHeaders(d.headers)
			out.RequestHeadersToAdd = append(out.RequestHeadersToAdd, ops.requestAdd...)
			out.RequestHeadersToRemove = append(out.RequestHeadersToRemove, ops.requestRemove...)
			out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd, ops.responseAdd...)
			out.ResponseHeadersToRemove = append(out.ResponseHeadersToRemove, ops.responseRemove...)
			if ops.authority != "" && action.HostRewriteSpecifier == nil {
				action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
			}
		}
		if hp := hashPolicy(consistentHashFor(ds, d.subset, d.port)); hp != nil {
			action.HashPolicy = append(action.HashPolicy, hp)
			hashed = true
		}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range rt.dests {
			if d.weight == 0 {
				continue
			}
			cluster, ds, ok := b.destCluster(d, ctx.port)
			if !ok {
				return false
			}
			cw := &routev3.WeightedCluster_ClusterWeight{Name: cluster, Weight: wrapperspb.UInt32(d.weight)}
			if d.headers != nil {
				ops := translateHeaders(d.headers)
				cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = ops.requestAdd, ops.requestRemove
				cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = ops.responseAdd, ops.responseRemove
				if ops.authority != "" {
					cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
				}
			}
			if hp := hashPolicy(consistentHashFor(ds, d.subset, d.port)); hp != nil {
				action.HashPolicy = append(action.HashPolicy, hp)
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		if len(wc.Clusters) == 0 {
			return false
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	rp, err := retryPolicy(in.GetRetries(), hashed)
	if err != nil {
		b.fail(err)
		return false
	}
	action.RetryPolicy = rp
	return true
}

// destCluster returns the cluster a destination resolves to for traffic
// that arrived on listenPort: its explicit port, else the same port, else
// the service's only port.
func (b *builder) destCluster(d routeDest, listenPort uint32) (string, *service, bool) {
	ds := b.p.lookupService(d.host)
	if ds == nil || (d.subset != "" && !ds.hasSubset(d.subset)) {
		return "", nil, false
	}
	port, ok := ds.destPort(listenPort, d.port)
	if !ok {
		return "", nil, false
	}
	return clusterName(port, d.subset, ds.fqdn), ds, true
}

// setTimeout sets a route's timeout (0s, disabled, when the VirtualService
// sets none) and max_grpc_timeout to the same, as Istio does for Envoy
// sidecars and gateways.
func setTimeout(action *routev3.RouteAction, t *durationpb.Duration) {
	action.Timeout = durationpb.New(0)
	if t != nil {
		action.Timeout = durationpb.New(t.AsDuration())
	}
	action.MaxGrpcTimeout = durationpb.New(action.Timeout.AsDuration())
}

// mirrorFraction is the share of requests mirrored: the percentage when
// set (nil when it is 0: no mirroring), else all of them.
func mirrorFraction(p *networking.Percent) *corev3.RuntimeFractionalPercent {
	if p == nil {
		return &corev3.RuntimeFractionalPercent{DefaultValue: percentHundred(100)}
	}
	if p.GetValue() <= 0 {
		return nil
	}
	return &corev3.RuntimeFractionalPercent{DefaultValue: percentMillion(p)}
}

// redirectAction translates a redirect as Istio's ApplyRedirect.
func redirectAction(rd *networking.HTTPRedirect, ctx routeCtx) *routev3.Route_Redirect {
	out := &routev3.RedirectAction{
		HostRedirect:         rd.GetAuthority(),
		PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()},
	}
	if rd.GetScheme() != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if rd.GetRedirectPort() != nil {
		switch rp := rd.GetRedirectPort().(type) {
		case *networking.HTTPRedirect_DerivePort:
			if rp.DerivePort == networking.HTTPRedirect_FROM_REQUEST_PORT {
				out.PortRedirect = ctx.port
			}
		case *networking.HTTPRedirect_Port:
			out.PortRedirect = rp.Port
		}
		scheme := rd.GetScheme()
		if scheme == "" {
			scheme = "http"
			if ctx.tls {
				scheme = "https"
			}
		}
		if (out.PortRedirect == 80 && scheme == "http") || (out.PortRedirect == 443 && scheme == "https") {
			out.PortRedirect = 0
		}
	}
	switch rd.GetRedirectCode() {
	case 302:
		out.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		out.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		out.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		out.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		out.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	}
	return &routev3.Route_Redirect{Redirect: out}
}

// directResponseAction translates a direct response.
func directResponseAction(d *networking.HTTPDirectResponse) *routev3.Route_DirectResponse {
	out := &routev3.DirectResponseAction{Status: d.GetStatus()}
	switch body := d.GetBody().GetSpecifier().(type) {
	case *networking.HTTPBody_String_:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body.String_}}
	case *networking.HTTPBody_Bytes:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: body.Bytes}}
	}
	return &routev3.Route_DirectResponse{DirectResponse: out}
}

// headerOps are translated header operations.
type headerOps struct {
	requestAdd, responseAdd       []*corev3.HeaderValueOption
	requestRemove, responseRemove []string
	authority                     string // a set or added :authority/host header: a host rewrite
}

// translateHeaders translates header operations as Istio's
// TranslateHeadersOperations: set overwrites, add appends, each sorted by
// name; :authority or host becomes a host rewrite; other pseudo-headers
// are dropped.
func translateHeaders(h *networking.Headers) headerOps {
	if h == nil {
		return headerOps{}
	}
	var out headerOps
	var setAuth, addAuth string
	out.requestAdd, setAuth = headerValues(h.GetRequest().GetSet(), false)
	add, addAuth := headerValues(h.GetRequest().GetAdd(), true)
	out.requestAdd = append(out.requestAdd, add...)
	out.responseAdd, _ = headerValues(h.GetResponse().GetSet(), false)
	radd, _ := headerValues(h.GetResponse().GetAdd(), true)
	out.responseAdd = append(out.responseAdd, radd...)
	out.authority = addAuth
	if setAuth != "" {
		out.authority = setAuth
	}
	out.requestRemove = dropInternal(h.GetRequest().GetRemove())
	out.responseRemove = dropInternal(h.GetResponse().GetRemove())
	return out
}

func headerValues(m map[string]string, appendValue bool) ([]*corev3.HeaderValueOption, string) {
	var out []*corev3.HeaderValueOption
	authority := ""
	for _, k := range sortedKeys(m) {
		if isAuthorityHeader(k) {
			authority = m[k]
		}
		if isInternalHeader(k) {
			continue
		}
		action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if appendValue {
			action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: m[k]}, AppendAction: action})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetHeader().GetKey() < out[j].GetHeader().GetKey() })
	return out, authority
}

func isInternalHeader(k string) bool {
	return strings.HasPrefix(k, ":") || strings.EqualFold(k, "host")
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

func dropInternal(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !isInternalHeader(k) {
			out = append(out, k)
		}
	}
	return out
}

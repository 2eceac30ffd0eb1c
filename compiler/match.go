package compiler

import (
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"
)

// Pseudo-headers Istio matches method, authority and scheme on.
const (
	headerMethod    = ":method"
	headerAuthority = ":authority"
	headerScheme    = ":scheme"
)

// translateRouteMatch translates an Istio match as Istio's
// TranslateRouteMatch does: headers and withoutHeaders (inverted) sorted by
// name, then :method, :authority and :scheme; the uri as path, prefix or
// safe_regex; case_sensitive from ignoreUriCase; query parameters (sorted
// by name). A nil match matches every request (prefix "/").
func translateRouteMatch(in *networking.HTTPMatchRequest) *routev3.RouteMatch {
	out := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if in == nil {
		return out
	}
	for _, name := range sortedKeys(in.GetHeaders()) {
		if mm := claimRouteMatch(name, in.GetHeaders()[name]); mm != nil {
			out.DynamicMetadata = append(out.DynamicMetadata, mm)
			continue
		}
		out.Headers = append(out.Headers, translateHeaderMatch(name, in.GetHeaders()[name]))
	}
	for _, name := range sortedKeys(in.GetWithoutHeaders()) {
		sm := in.GetWithoutHeaders()[name]
		if mm := claimRouteMatch(name, sm); mm != nil {
			mm.Invert = true
			out.DynamicMetadata = append(out.DynamicMetadata, mm)
			continue
		}
		hm := translateHeaderMatch(name, sm)
		hm.InvertMatch = true
		if !presentMatch(sm) {
			hm.TreatMissingHeaderAsEmpty = true
		}
		out.Headers = append(out.Headers, hm)
	}
	sort.SliceStable(out.Headers, func(i, j int) bool { return out.Headers[i].GetName() < out.Headers[j].GetName() })

	switch m := in.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: m.Exact}
	case *networking.StringMatch_Prefix:
		out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: m.Prefix}
	case *networking.StringMatch_Regex:
		out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.Regex}}
	}
	out.CaseSensitive = wrapperspb.Bool(!in.GetIgnoreUriCase())

	if in.GetMethod() != nil {
		out.Headers = append(out.Headers, translateHeaderMatch(headerMethod, in.GetMethod()))
	}
	if in.GetAuthority() != nil {
		out.Headers = append(out.Headers, translateHeaderMatch(headerAuthority, in.GetAuthority()))
	}
	if in.GetScheme() != nil {
		out.Headers = append(out.Headers, translateHeaderMatch(headerScheme, in.GetScheme()))
	}
	for _, name := range sortedKeys(in.GetQueryParams()) {
		sm := in.GetQueryParams()[name]
		qm := &routev3.QueryParameterMatcher{Name: name}
		if presentMatch(sm) {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		out.QueryParameters = append(out.QueryParameters, qm)
	}
	return out
}

// translateHeaderMatch translates one header condition: a match without a
// value (or regex "*", as Istio reads it) is a present match.
func translateHeaderMatch(name string, in *networking.StringMatch) *routev3.HeaderMatcher {
	out := &routev3.HeaderMatcher{Name: name}
	if presentMatch(in) {
		out.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return out
	}
	out.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(in)}
	return out
}

// presentMatch reports whether a StringMatch only asks for presence.
func presentMatch(in *networking.StringMatch) bool {
	return in == nil || in.GetMatchType() == nil || in.GetRegex() == "*"
}

// stringMatcher translates a StringMatch with a value.
func stringMatcher(in *networking.StringMatch) *matcherv3.StringMatcher {
	switch m := in.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.Regex}}}
	}
	return nil
}

// isCatchAllRoute reports whether r matches every request: prefix "/" (or
// regex ".*") without header or query parameter conditions. Routes after
// it can never match, so Istio (and gitmesh) emits none.
func isCatchAllRoute(r *routev3.Route) bool {
	m := r.GetMatch()
	catchAll := false
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		catchAll = ps.Prefix == "/"
	case *routev3.RouteMatch_PathSeparatedPrefix:
		catchAll = ps.PathSeparatedPrefix == "/"
	case *routev3.RouteMatch_SafeRegex:
		catchAll = ps.SafeRegex.GetRegex() == ".*"
	}
	return catchAll && len(m.GetHeaders()) == 0 && len(m.GetQueryParameters()) == 0 && len(m.GetDynamicMetadata()) == 0
}

// sourceMatches reports whether a match applies to the proxy being
// compiled: its gateways include the proxy's (gateway is "" for sidecars,
// which are "mesh"), or, without gateways, its sourceLabels and
// sourceNamespace match the proxy's. ns resolves short gateway names.
func (b *builder) sourceMatches(m *networking.HTTPMatchRequest, gateway, ns string) bool {
	if m == nil {
		return true
	}
	return b.sourceMatchesL4(m.GetGateways(), m.GetSourceLabels(), m.GetSourceNamespace(), gateway, ns)
}

func (b *builder) sourceMatchesL4(gateways []string, labels map[string]string, sourceNS, gateway, ns string) bool {
	if len(gateways) > 0 {
		for _, g := range gateways {
			if (g == meshGateway && gateway == "") || (g != meshGateway && resolveGatewayName(g, ns) == gateway) {
				return true
			}
		}
		return false
	}
	return labelsMatch(labels, b.class.Labels) && (sourceNS == "" || sourceNS == b.namespace)
}

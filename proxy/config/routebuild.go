package config

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/match"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/anypb"
)

// Itoa is strconv.Itoa, for field paths ("routes[3]").
func Itoa(i int) string { return strconv.Itoa(i) }

// perFilterConfig is the typed_per_filter_config of one level (route
// configuration, virtual host or route), decoded.
type perFilterConfig struct {
	fault         *routing.FaultConfig
	faultDisabled bool
	cors          *routing.CORSPolicy
	corsDisabled  bool
}

// buildPerFilterConfig decodes a typed_per_filter_config map: the fault
// filter's HTTPFault and the CORS filter's CorsPolicy, either bare or
// wrapped in a route.v3.FilterConfig (whose disabled turns the filter off
// at that level).
func buildPerFilterConfig(field string, m map[string]*anypb.Any) (perFilterConfig, *fieldError) {
	var out perFilterConfig
	for _, key := range SortedKeys(m) {
		a := m[key]
		f := field + ".typed_per_filter_config[" + key + "]"
		disabled := false
		if a.MessageIs(&routev3.FilterConfig{}) {
			fc := &routev3.FilterConfig{}
			if err := a.UnmarshalTo(fc); err != nil {
				return out, fieldErr(f, "decoding FilterConfig: %w", err)
			}
			if err := checkFields(fc, "config", "is_optional", "disabled"); err != nil {
				return out, fieldErr(f, "%w", err)
			}
			disabled, a = fc.GetDisabled(), fc.GetConfig()
			f += ".config"
		}
		var fe *fieldError
		switch key {
		case FaultFilterName:
			fe = buildFilterOverride(f, a, disabled, buildFault, &out.fault, &out.faultDisabled)
		case CORSFilterName:
			fe = buildFilterOverride(f, a, disabled, buildCORS, &out.cors, &out.corsDisabled)
		default:
			fe = fieldErr(f, "filter %q: %w", key, ErrUnsupported)
		}
		if fe != nil {
			return out, fe
		}
	}
	return out, nil
}

// buildFilterOverride decodes one filter's typed_per_filter_config entry
// at field: disabled sets *off, otherwise build decodes a into *cfg.
func buildFilterOverride[T any](field string, a *anypb.Any, disabled bool, build func(*anypb.Any) (T, *fieldError), cfg *T, off *bool) *fieldError {
	if disabled {
		*off = true
		return nil
	}
	c, fe := build(a)
	if fe != nil {
		fe.Field = field + fe.Field
		return fe
	}
	*cfg = c
	return nil
}

// routeScope is what a route inherits from its virtual host and route
// configuration.
type routeScope struct {
	headers  routing.HeaderLevels // virtual host then route configuration
	filters  []perFilterConfig
	clusters *clusterRefs
	// validate is validate_clusters: an unknown cluster is an error
	// rather than a reference that warms.
	validate bool
	// maxBody is max_direct_response_body_size_bytes (Envoy's default
	// 4096): a direct_response body above it is rejected, as Envoy does.
	maxBody int
}

// defaultMaxDirectResponseBody is Envoy's default
// max_direct_response_body_size_bytes.
const defaultMaxDirectResponseBody = 4096

// BuildRouteTable validates a RouteConfiguration and resolves the clusters
// it names through refs. Unknown clusters resolve to placeholders (the
// table warms) unless validate_clusters is set, or, when unset, the table
// is an inline route_config: Envoy defaults validate_clusters to true for
// those and to false for RDS.
func BuildRouteTable(rc *routev3.RouteConfiguration, refs *clusterRefs, inline bool) (*routing.RouteTable, *fieldError) {
	if err := checkFields(rc, "name", "virtual_hosts", "validate_clusters",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config", "max_direct_response_body_size_bytes"); err != nil {
		return nil, &fieldError{Err: err}
	}
	maxBody := defaultMaxDirectResponseBody
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		maxBody = int(v.GetValue())
	}
	rcReq, fe := buildHeaderMutation("", "request", rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	rcResp, fe := buildHeaderMutation("", "response", rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	rcFilters, fe := buildPerFilterConfig("", rc.GetTypedPerFilterConfig())
	if fe != nil {
		return nil, fe
	}
	validate := inline
	if v := rc.GetValidateClusters(); v != nil {
		validate = v.GetValue()
	}
	t := &routing.RouteTable{Name: rc.GetName(), Exact: map[string]*routing.VirtualHost{}}
	seen := map[string]string{}
	for i, v := range rc.GetVirtualHosts() {
		field := fmt.Sprintf("virtual_hosts[%d]", i)
		if err := checkFields(v, "name", "domains", "routes", "require_tls",
			"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
			"typed_per_filter_config"); err != nil {
			return nil, &fieldError{Field: field, Err: err}
		}
		vh := &routing.VirtualHost{Name: v.GetName()}
		switch v.GetRequireTls() {
		case routev3.VirtualHost_NONE:
		case routev3.VirtualHost_ALL:
			vh.RequireTLS = true
		default:
			return nil, fieldErr(field+".require_tls", "%s: %w", v.GetRequireTls(), ErrUnsupported)
		}
		vReq, fe := buildHeaderMutation(field, "request", v.GetRequestHeadersToAdd(), v.GetRequestHeadersToRemove())
		if fe != nil {
			return nil, fe
		}
		vResp, fe := buildHeaderMutation(field, "response", v.GetResponseHeadersToAdd(), v.GetResponseHeadersToRemove())
		if fe != nil {
			return nil, fe
		}
		vFilters, fe := buildPerFilterConfig(field, v.GetTypedPerFilterConfig())
		if fe != nil {
			return nil, fe
		}
		scope := &routeScope{
			headers: routing.HeaderLevels{
				Request:  routing.AppendNonNil(nil, vReq, rcReq),
				Response: routing.AppendNonNil(nil, vResp, rcResp),
			},
			filters:  []perFilterConfig{vFilters, rcFilters},
			clusters: refs,
			validate: validate,
			maxBody:  maxBody,
		}
		for j, r := range v.GetRoutes() {
			rt, fe := buildRoute(r, scope)
			if fe != nil {
				fe.Field = fmt.Sprintf("%s.routes[%d]%s", field, j, fe.Field)
				return nil, fe
			}
			vh.Routes = append(vh.Routes, rt)
		}
		if len(v.GetDomains()) == 0 {
			return nil, fieldErr(field+".domains", "empty")
		}
		for j, d := range v.GetDomains() {
			d = match.LowerASCII(d)
			if prev, dup := seen[d]; dup {
				return nil, fieldErr(fmt.Sprintf("%s.domains[%d]", field, j), "domain %q is also in virtual host %q", d, prev)
			}
			seen[d] = v.GetName()
			switch {
			case d == "*":
				t.Star = vh
			case strings.HasPrefix(d, "*"):
				t.Suffixes = append(t.Suffixes, routing.WildcardDomain{Pattern: d[1:], VirtualHost: vh})
			case strings.HasSuffix(d, "*"):
				t.Prefixes = append(t.Prefixes, routing.WildcardDomain{Pattern: d[:len(d)-1], VirtualHost: vh})
			default:
				t.Exact[d] = vh
			}
		}
	}
	longestFirst := func(ws []routing.WildcardDomain) {
		sort.SliceStable(ws, func(a, b int) bool { return len(ws[a].Pattern) > len(ws[b].Pattern) })
	}
	longestFirst(t.Suffixes)
	longestFirst(t.Prefixes)
	return t, nil
}

// buildRoute validates one Route; field paths in errors are relative
// (".match.headers[0]").
func buildRoute(r *routev3.Route, scope *routeScope) (*routing.Route, *fieldError) {
	if err := checkFields(r, "name", "match", "route", "redirect", "direct_response", "metadata", "decorator",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config"); err != nil {
		if r.GetAction() != nil && r.GetRoute() == nil && r.GetRedirect() == nil && r.GetDirectResponse() == nil {
			return nil, fieldErr(".action", "unknown route action (route, redirect and direct_response are supported): %w", err)
		}
		return nil, &fieldError{Err: err}
	}
	rt := &routing.Route{Name: r.GetName(), Timeout: DefaultRouteTimeout}
	m, fe := BuildMatch(r.GetMatch())
	if fe != nil {
		fe.Field = ".match" + fe.Field
		return nil, fe
	}
	rt.Match = m

	req, fe := buildHeaderMutation("", "request", r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	resp, fe := buildHeaderMutation("", "response", r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	rt.Headers = routing.HeaderLevels{
		Request:  routing.AppendNonNil(nil, req),
		Response: routing.AppendNonNil(nil, resp),
	}
	rt.Headers.Request = append(rt.Headers.Request, scope.headers.Request...)
	rt.Headers.Response = append(rt.Headers.Response, scope.headers.Response...)
	if len(rt.Headers.Request) == 0 {
		rt.Headers.Request = nil
	}
	if len(rt.Headers.Response) == 0 {
		rt.Headers.Response = nil
	}

	own, fe := buildPerFilterConfig("", r.GetTypedPerFilterConfig())
	if fe != nil {
		return nil, fe
	}
	// The most specific level that configures a filter wins (fault); CORS
	// merges attribute by attribute.
	levels := append([]perFilterConfig{own}, scope.filters...)
	for _, l := range levels {
		if l.fault != nil || l.faultDisabled {
			rt.Fault, rt.FaultDisabled = l.fault, l.faultDisabled
			break
		}
	}
	for _, l := range levels {
		if l.corsDisabled {
			break
		}
		rt.CORS = routing.MergeCORS(rt.CORS, l.cors)
	}

	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		rt.Action = routing.ActionForward
		if fe := buildRouteAction(rt, a.Route, scope); fe != nil {
			return nil, fe
		}
	case *routev3.Route_Redirect:
		rd, fe := buildRedirect(a.Redirect)
		if fe != nil {
			fe.Field = ".redirect" + fe.Field
			return nil, fe
		}
		rt.Action, rt.Redirect = routing.ActionRedirect, rd
	case *routev3.Route_DirectResponse:
		d, fe := buildDirectResponse(a.DirectResponse, scope.maxBody)
		if fe != nil {
			fe.Field = ".direct_response" + fe.Field
			return nil, fe
		}
		rt.Action, rt.Direct = routing.ActionDirect, d
	case nil:
		return nil, fieldErr(".action", "missing route action")
	default:
		return nil, fieldErr(".action", "route action %T: %w", a, ErrUnsupported)
	}
	return rt, nil
}

// buildRouteAction fills the forwarding part of rt from a RouteAction.
func buildRouteAction(rt *routing.Route, a *routev3.RouteAction, scope *routeScope) *fieldError {
	if err := checkFields(a, "cluster", "weighted_clusters", "timeout", "prefix_rewrite", "regex_rewrite",
		"host_rewrite_literal", "retry_policy", "request_mirror_policies", "hash_policy", "max_grpc_timeout",
		"cluster_not_found_response_code"); err != nil {
		return &fieldError{Field: ".route", Err: err}
	}
	if d := a.GetTimeout(); d != nil {
		rt.Timeout = d.AsDuration()
	}
	switch code := a.GetClusterNotFoundResponseCode(); code {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		rt.ClusterNotFoundCode = http.StatusServiceUnavailable
	case routev3.RouteAction_NOT_FOUND:
		rt.ClusterNotFoundCode = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		rt.ClusterNotFoundCode = http.StatusInternalServerError
	default:
		return fieldErr(".route.cluster_not_found_response_code", "%s: %w", code, ErrUnsupported)
	}
	if d := a.GetMaxGrpcTimeout(); d != nil {
		v := d.AsDuration()
		rt.MaxGRPCTimeout = &v
	}
	if p := a.GetPrefixRewrite(); p != "" {
		// Any path specifier: on a safe_regex route Envoy replaces the
		// whole path (see matchedPrefixLen).
		rt.PrefixRewrite = &p
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if rt.PrefixRewrite != nil {
			// Envoy: "Specify only one of prefix_rewrite, regex_rewrite or
			// path_rewrite_policy".
			return fieldErr(".route.regex_rewrite", "prefix_rewrite and regex_rewrite are mutually exclusive")
		}
		r, err := buildRegexRewrite(rr)
		if err != nil {
			return fieldErr(".route.regex_rewrite", "%w", err)
		}
		rt.RegexRewrite = r
	}
	rt.HostRewrite = a.GetHostRewriteLiteral()
	if rp := a.GetRetryPolicy(); rp != nil {
		p, fe := buildRetryPolicy(rp)
		if fe != nil {
			fe.Field = ".route.retry_policy" + fe.Field
			return fe
		}
		rt.Retry = p
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		m, fe := buildMirrorPolicy(mp, scope.clusters, scope.validate)
		if fe != nil {
			fe.Field = fmt.Sprintf(".route.request_mirror_policies[%d]%s", i, fe.Field)
			return fe
		}
		rt.Mirrors = append(rt.Mirrors, m)
	}
	for i, hp := range a.GetHashPolicy() {
		h, fe := buildHashPolicy(hp)
		if fe != nil {
			fe.Field = fmt.Sprintf(".route.hash_policy[%d]%s", i, fe.Field)
			return fe
		}
		rt.HashPolicies = append(rt.HashPolicies, h)
	}
	lookup := func(field, name string) (*upstream.Cluster, *fieldError) {
		return scope.clusters.lookup(field, name, scope.validate)
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		c, fe := lookup(".route.cluster", cs.Cluster)
		if fe != nil {
			return fe
		}
		rt.Clusters = []routing.WeightedCluster{{Cluster: c, Upto: 1}}
		rt.TotalWeight = 1
	case *routev3.RouteAction_WeightedClusters:
		wcs := cs.WeightedClusters
		if err := checkFields(wcs, "clusters", "total_weight"); err != nil {
			return &fieldError{Field: ".route.weighted_clusters", Err: err}
		}
		for i, w := range wcs.GetClusters() {
			field := fmt.Sprintf(".route.weighted_clusters.clusters[%d]", i)
			if err := checkFields(w, "name", "weight", "host_rewrite_literal",
				"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"); err != nil {
				return &fieldError{Field: field, Err: err}
			}
			c, fe := lookup(field+".name", w.GetName())
			if fe != nil {
				return fe
			}
			if w.GetWeight().GetValue() == 0 {
				continue
			}
			req, fe := buildHeaderMutation(field, "request", w.GetRequestHeadersToAdd(), w.GetRequestHeadersToRemove())
			if fe != nil {
				return fe
			}
			resp, fe := buildHeaderMutation(field, "response", w.GetResponseHeadersToAdd(), w.GetResponseHeadersToRemove())
			if fe != nil {
				return fe
			}
			if rt.TotalWeight+w.GetWeight().GetValue() < rt.TotalWeight {
				// Envoy: "The sum of weights of all weighted clusters of
				// route X exceeds 4294967295".
				return fieldErr(".route.weighted_clusters", "the weights sum to more than %d", uint32(math.MaxUint32))
			}
			rt.TotalWeight += w.GetWeight().GetValue()
			rt.Clusters = append(rt.Clusters, routing.WeightedCluster{
				Cluster: c, Upto: rt.TotalWeight, RequestHeaders: req, ResponseHeaders: resp,
				HostRewrite: w.GetHostRewriteLiteral(),
			})
		}
		if rt.TotalWeight == 0 {
			// Envoy: "Sum of weights in the weighted_cluster must be
			// greater than 0."
			return fieldErr(".route.weighted_clusters", "weights sum to 0")
		}
		// total_weight is deprecated and ignored by Envoy: a cluster's
		// share is its weight over the sum of the weights, whatever they
		// add up to.
	default:
		return fieldErr(".route", "cluster specifier %T: %w", cs, ErrUnsupported)
	}
	return nil
}

func buildRegexRewrite(rr *matcherv3.RegexMatchAndSubstitute) (*routing.RegexRewrite, error) {
	if err := checkFields(rr.GetPattern(), "regex", "google_re2"); err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	re, err := regexp.Compile(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, fmt.Errorf("pattern: compiling regex %q: %w", rr.GetPattern().GetRegex(), err)
	}
	return &routing.RegexRewrite{Re: re, Substitution: re2Substitution(rr.GetSubstitution())}, nil
}

// re2Substitution converts RE2's "\1" backreferences to Go's "${1}" and
// escapes "$".
func re2Substitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${" + string(s[i+1]) + "}")
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// BuildMatch builds a RouteMatch, rejecting fields the proxy does not
// implement.
func BuildMatch(m *routev3.RouteMatch) (routing.RouteMatch, *fieldError) {
	var out routing.RouteMatch
	if err := checkFields(m, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
		"query_parameters", "grpc", "dynamic_metadata"); err != nil {
		return out, &fieldError{Err: err}
	}
	out.IgnoreCase = m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Kind, out.Value = routing.PathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		out.Kind, out.Value = routing.PathExact, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.Kind, out.Value = routing.PathSeparatedPrefix, ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		// Envoy ignores case_sensitive for regex matches.
		re, err := compileFull(ps.SafeRegex.GetRegex(), false)
		if err != nil {
			return out, fieldErr(".safe_regex.regex", "%w", err)
		}
		out.Kind, out.Re = routing.PathRegex, re
	case nil:
		// Envoy: path_specifier is a required oneof.
		return out, fieldErr("", "missing path specifier (prefix, path, safe_regex or path_separated_prefix)")
	default:
		return out, fieldErr("", "path specifier %T: %w", ps, ErrUnsupported)
	}
	if g := m.GetGrpc(); g != nil {
		if err := checkFields(g); err != nil {
			return out, fieldErr(".grpc", "%w", err)
		}
		out.GRPC = true
	}
	for i, h := range m.GetHeaders() {
		hm, err := BuildHeaderMatch(h)
		if err != nil {
			return out, fieldErr(fmt.Sprintf(".headers[%d]", i), "%w", err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		field := fmt.Sprintf(".query_parameters[%d]", i)
		if err := checkFields(q, "name", "string_match", "present_match"); err != nil {
			return out, fieldErr(field, "%w", err)
		}
		if q.GetName() == "" {
			return out, fieldErr(field+".name", "empty")
		}
		qm := routing.QueryMatch{Name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_PresentMatch:
			// Envoy's QueryParameterMatcher builds a presence check for
			// present_match whatever its value: false matches a present
			// parameter too.
			qm.Present = true
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := buildStringMatch(s.StringMatch)
			if err != nil {
				return out, fieldErr(field+".string_match", "%w", err)
			}
			qm.Str = sm
		case nil:
			qm.Present = true
		}
		out.Query = append(out.Query, qm)
	}
	for i, dm := range m.GetDynamicMetadata() {
		mm, fe := buildMetadataMatcher(dm)
		if fe != nil {
			fe.Field = fmt.Sprintf(".dynamic_metadata[%d]%s", i, fe.Field)
			return out, fe
		}
		out.Metadata = append(out.Metadata, mm)
	}
	return out, nil
}

// BuildHeaderMatch builds a HeaderMatcher (its deprecated forms too),
// rejecting fields the proxy does not implement.
func BuildHeaderMatch(h *routev3.HeaderMatcher) (routing.HeaderMatch, error) {
	if err := checkFields(h, "name", "exact_match", "safe_regex_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return routing.HeaderMatch{}, err
	}
	name := h.GetName()
	if name == "" {
		return routing.HeaderMatch{}, fmt.Errorf("name is empty")
	}
	if !strings.HasPrefix(name, ":") {
		name = http.CanonicalHeaderKey(name)
	}
	hm := routing.HeaderMatch{Name: name, Invert: h.GetInvertMatch(), MissingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	var sm *matcherv3.StringMatcher
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		hm.Present = true
		hm.Invert = hm.Invert != !s.PresentMatch
		return hm, nil
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case *routev3.HeaderMatcher_ExactMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}
	case *routev3.HeaderMatcher_PrefixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}
	case *routev3.HeaderMatcher_SuffixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}}
	case *routev3.HeaderMatcher_ContainsMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}
	case nil:
		// Envoy: no specifier means "present".
		hm.Present = true
		return hm, nil
	default:
		return hm, fmt.Errorf("header match %T: %w", s, ErrUnsupported)
	}
	str, err := buildStringMatch(sm)
	if err != nil {
		return hm, fmt.Errorf("string_match: %w", err)
	}
	hm.Str = str
	return hm, nil
}

func buildStringMatch(sm *matcherv3.StringMatcher) (*match.StringMatch, error) {
	if err := checkFields(sm, "exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"); err != nil {
		return nil, err
	}
	out := &match.StringMatch{IgnoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = match.StrExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = match.StrPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = match.StrSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = match.StrContains, p.Contains
		if out.IgnoreCase {
			out.Value = match.LowerASCII(p.Contains)
		}
	case *matcherv3.StringMatcher_SafeRegex:
		// ignore_case has no effect on safe_regex in Envoy.
		re, err := compileFull(p.SafeRegex.GetRegex(), false)
		if err != nil {
			return nil, err
		}
		out.Kind, out.Re = match.StrRegex, re
	default:
		return nil, fmt.Errorf("match pattern %T: %w", p, ErrUnsupported)
	}
	return out, nil
}

// compileFull compiles an RE2 expression that must match the whole input,
// as Envoy's safe_regex does.
func compileFull(expr string, ignoreCase bool) (*regexp.Regexp, error) {
	// expr must parse on its own: spliced between the anchors, an
	// unbalanced ")" would close them ("a)|(b" would match "ax").
	if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
		return nil, fmt.Errorf("compiling regex %q: %w", expr, err)
	}
	prefix := ""
	if ignoreCase {
		prefix = "(?i)"
	}
	re, err := regexp.Compile(prefix + "^(?:" + expr + ")$")
	if err != nil {
		// A \Q quote still open at the end of expr took ")$" as text.
		re, err = regexp.Compile(prefix + "^(?:" + expr + `\E)$`)
	}
	if err != nil {
		return nil, fmt.Errorf("compiling regex %q: %w", expr, err)
	}
	return re, nil
}

// GRPCTimeout parses a grpc-timeout header value ("100m", "5S").
func GRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

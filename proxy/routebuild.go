package proxy

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
	"google.golang.org/protobuf/types/known/anypb"
)

func itoa(i int) string { return strconv.Itoa(i) }

// perFilterConfig is the typed_per_filter_config of one level (route
// configuration, virtual host or route), decoded.
type perFilterConfig struct {
	fault         *faultConfig
	faultDisabled bool
	cors          *corsPolicy
	corsDisabled  bool
}

// buildPerFilterConfig decodes a typed_per_filter_config map: the fault
// filter's HTTPFault and the CORS filter's CorsPolicy, either bare or
// wrapped in a route.v3.FilterConfig (whose disabled turns the filter off
// at that level).
func buildPerFilterConfig(field string, m map[string]*anypb.Any) (perFilterConfig, *fieldError) {
	var out perFilterConfig
	for _, key := range sortedKeys(m) {
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
		case faultFilterName:
			fe = buildFilterOverride(f, a, disabled, buildFault, &out.fault, &out.faultDisabled)
		case corsFilterName:
			fe = buildFilterOverride(f, a, disabled, buildCORS, &out.cors, &out.corsDisabled)
		default:
			fe = fieldErr(f, "filter %q: %w", key, errUnsupported)
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
		fe.field = field + fe.field
		return fe
	}
	*cfg = c
	return nil
}

// routeScope is what a route inherits from its virtual host and route
// configuration.
type routeScope struct {
	headers  headerLevels // virtual host then route configuration
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

// buildRouteTable validates a RouteConfiguration and resolves the clusters
// it names through refs. Unknown clusters resolve to placeholders (the
// table warms) unless validate_clusters is set, or, when unset, the table
// is an inline route_config: Envoy defaults validate_clusters to true for
// those and to false for RDS.
func buildRouteTable(rc *routev3.RouteConfiguration, refs *clusterRefs, inline bool) (*routeTable, *fieldError) {
	if err := checkFields(rc, "name", "virtual_hosts", "validate_clusters",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config", "max_direct_response_body_size_bytes"); err != nil {
		return nil, &fieldError{err: err}
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
	t := &routeTable{name: rc.GetName(), exact: map[string]*virtualHost{}}
	seen := map[string]string{}
	for i, v := range rc.GetVirtualHosts() {
		field := fmt.Sprintf("virtual_hosts[%d]", i)
		if err := checkFields(v, "name", "domains", "routes", "require_tls",
			"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
			"typed_per_filter_config"); err != nil {
			return nil, &fieldError{field: field, err: err}
		}
		vh := &virtualHost{name: v.GetName()}
		switch v.GetRequireTls() {
		case routev3.VirtualHost_NONE:
		case routev3.VirtualHost_ALL:
			vh.requireTLS = true
		default:
			return nil, fieldErr(field+".require_tls", "%s: %w", v.GetRequireTls(), errUnsupported)
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
			headers: headerLevels{
				request:  appendNonNil(nil, vReq, rcReq),
				response: appendNonNil(nil, vResp, rcResp),
			},
			filters:  []perFilterConfig{vFilters, rcFilters},
			clusters: refs,
			validate: validate,
			maxBody:  maxBody,
		}
		for j, r := range v.GetRoutes() {
			rt, fe := buildRoute(r, scope)
			if fe != nil {
				fe.field = fmt.Sprintf("%s.routes[%d]%s", field, j, fe.field)
				return nil, fe
			}
			vh.routes = append(vh.routes, rt)
		}
		if len(v.GetDomains()) == 0 {
			return nil, fieldErr(field+".domains", "empty")
		}
		for j, d := range v.GetDomains() {
			d = lowerASCII(d)
			if prev, dup := seen[d]; dup {
				return nil, fieldErr(fmt.Sprintf("%s.domains[%d]", field, j), "domain %q is also in virtual host %q", d, prev)
			}
			seen[d] = v.GetName()
			switch {
			case d == "*":
				t.star = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcardDomain{pattern: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcardDomain{pattern: d[:len(d)-1], vh: vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(ws []wildcardDomain) {
		sort.SliceStable(ws, func(a, b int) bool { return len(ws[a].pattern) > len(ws[b].pattern) })
	}
	longestFirst(t.suffixes)
	longestFirst(t.prefixes)
	return t, nil
}

// buildRoute validates one Route; field paths in errors are relative
// (".match.headers[0]").
func buildRoute(r *routev3.Route, scope *routeScope) (*route, *fieldError) {
	if err := checkFields(r, "name", "match", "route", "redirect", "direct_response", "metadata", "decorator",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config"); err != nil {
		if r.GetAction() != nil && r.GetRoute() == nil && r.GetRedirect() == nil && r.GetDirectResponse() == nil {
			return nil, fieldErr(".action", "unknown route action (route, redirect and direct_response are supported): %w", err)
		}
		return nil, &fieldError{err: err}
	}
	rt := &route{name: r.GetName(), timeout: defaultRouteTimeout}
	m, fe := buildMatch(r.GetMatch())
	if fe != nil {
		fe.field = ".match" + fe.field
		return nil, fe
	}
	rt.match = m

	req, fe := buildHeaderMutation("", "request", r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	resp, fe := buildHeaderMutation("", "response", r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove())
	if fe != nil {
		return nil, fe
	}
	rt.headers = headerLevels{
		request:  appendNonNil(nil, req),
		response: appendNonNil(nil, resp),
	}
	rt.headers.request = append(rt.headers.request, scope.headers.request...)
	rt.headers.response = append(rt.headers.response, scope.headers.response...)
	if len(rt.headers.request) == 0 {
		rt.headers.request = nil
	}
	if len(rt.headers.response) == 0 {
		rt.headers.response = nil
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
			rt.fault, rt.faultDisabled = l.fault, l.faultDisabled
			break
		}
	}
	for _, l := range levels {
		if l.corsDisabled {
			break
		}
		rt.cors = mergeCORS(rt.cors, l.cors)
	}

	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		rt.action = actionForward
		if fe := buildRouteAction(rt, a.Route, scope); fe != nil {
			return nil, fe
		}
	case *routev3.Route_Redirect:
		rd, fe := buildRedirect(a.Redirect)
		if fe != nil {
			fe.field = ".redirect" + fe.field
			return nil, fe
		}
		rt.action, rt.redirect = actionRedirect, rd
	case *routev3.Route_DirectResponse:
		d, fe := buildDirectResponse(a.DirectResponse, scope.maxBody)
		if fe != nil {
			fe.field = ".direct_response" + fe.field
			return nil, fe
		}
		rt.action, rt.direct = actionDirect, d
	case nil:
		return nil, fieldErr(".action", "missing route action")
	default:
		return nil, fieldErr(".action", "route action %T: %w", a, errUnsupported)
	}
	return rt, nil
}

// buildRouteAction fills the forwarding part of rt from a RouteAction.
func buildRouteAction(rt *route, a *routev3.RouteAction, scope *routeScope) *fieldError {
	if err := checkFields(a, "cluster", "weighted_clusters", "timeout", "prefix_rewrite", "regex_rewrite",
		"host_rewrite_literal", "retry_policy", "request_mirror_policies", "hash_policy", "max_grpc_timeout",
		"cluster_not_found_response_code"); err != nil {
		return &fieldError{field: ".route", err: err}
	}
	if d := a.GetTimeout(); d != nil {
		rt.timeout = d.AsDuration()
	}
	switch code := a.GetClusterNotFoundResponseCode(); code {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		rt.clusterNotFoundCode = http.StatusServiceUnavailable
	case routev3.RouteAction_NOT_FOUND:
		rt.clusterNotFoundCode = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		rt.clusterNotFoundCode = http.StatusInternalServerError
	default:
		return fieldErr(".route.cluster_not_found_response_code", "%s: %w", code, errUnsupported)
	}
	if d := a.GetMaxGrpcTimeout(); d != nil {
		v := d.AsDuration()
		rt.maxGRPCTimeout = &v
	}
	if p := a.GetPrefixRewrite(); p != "" {
		// Any path specifier: on a safe_regex route Envoy replaces the
		// whole path (see matchedPrefixLen).
		rt.prefixRewrite = &p
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if rt.prefixRewrite != nil {
			// Envoy: "Specify only one of prefix_rewrite, regex_rewrite or
			// path_rewrite_policy".
			return fieldErr(".route.regex_rewrite", "prefix_rewrite and regex_rewrite are mutually exclusive")
		}
		r, err := buildRegexRewrite(rr)
		if err != nil {
			return fieldErr(".route.regex_rewrite", "%w", err)
		}
		rt.regexRewrite = r
	}
	rt.hostRewrite = a.GetHostRewriteLiteral()
	if rp := a.GetRetryPolicy(); rp != nil {
		p, fe := buildRetryPolicy(rp)
		if fe != nil {
			fe.field = ".route.retry_policy" + fe.field
			return fe
		}
		rt.retry = p
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		m, fe := buildMirrorPolicy(mp, scope.clusters, scope.validate)
		if fe != nil {
			fe.field = fmt.Sprintf(".route.request_mirror_policies[%d]%s", i, fe.field)
			return fe
		}
		rt.mirrors = append(rt.mirrors, m)
	}
	for i, hp := range a.GetHashPolicy() {
		h, fe := buildHashPolicy(hp)
		if fe != nil {
			fe.field = fmt.Sprintf(".route.hash_policy[%d]%s", i, fe.field)
			return fe
		}
		rt.hashPolicies = append(rt.hashPolicies, h)
	}
	lookup := func(field, name string) (*cluster, *fieldError) {
		return scope.clusters.lookup(field, name, scope.validate)
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		c, fe := lookup(".route.cluster", cs.Cluster)
		if fe != nil {
			return fe
		}
		rt.clusters = []weightedCluster{{cluster: c, upto: 1}}
		rt.totalWeight = 1
	case *routev3.RouteAction_WeightedClusters:
		wcs := cs.WeightedClusters
		if err := checkFields(wcs, "clusters", "total_weight"); err != nil {
			return &fieldError{field: ".route.weighted_clusters", err: err}
		}
		for i, w := range wcs.GetClusters() {
			field := fmt.Sprintf(".route.weighted_clusters.clusters[%d]", i)
			if err := checkFields(w, "name", "weight", "host_rewrite_literal",
				"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"); err != nil {
				return &fieldError{field: field, err: err}
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
			if rt.totalWeight+w.GetWeight().GetValue() < rt.totalWeight {
				// Envoy: "The sum of weights of all weighted clusters of
				// route X exceeds 4294967295".
				return fieldErr(".route.weighted_clusters", "the weights sum to more than %d", uint32(math.MaxUint32))
			}
			rt.totalWeight += w.GetWeight().GetValue()
			rt.clusters = append(rt.clusters, weightedCluster{
				cluster: c, upto: rt.totalWeight, requestHeaders: req, responseHeaders: resp,
				hostRewrite: w.GetHostRewriteLiteral(),
			})
		}
		if rt.totalWeight == 0 {
			// Envoy: "Sum of weights in the weighted_cluster must be
			// greater than 0."
			return fieldErr(".route.weighted_clusters", "weights sum to 0")
		}
		// total_weight is deprecated and ignored by Envoy: a cluster's
		// share is its weight over the sum of the weights, whatever they
		// add up to.
	default:
		return fieldErr(".route", "cluster specifier %T: %w", cs, errUnsupported)
	}
	return nil
}

func buildRegexRewrite(rr *matcherv3.RegexMatchAndSubstitute) (*regexRewrite, error) {
	if err := checkFields(rr.GetPattern(), "regex", "google_re2"); err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	re, err := regexp.Compile(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, fmt.Errorf("pattern: compiling regex %q: %w", rr.GetPattern().GetRegex(), err)
	}
	return &regexRewrite{re: re, sub: re2Substitution(rr.GetSubstitution())}, nil
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

func buildMatch(m *routev3.RouteMatch) (routeMatch, *fieldError) {
	var out routeMatch
	if err := checkFields(m, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
		"query_parameters", "grpc", "dynamic_metadata"); err != nil {
		return out, &fieldError{err: err}
	}
	out.ignoreCase = m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.kind, out.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		out.kind, out.value = pathExact, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.kind, out.value = pathSeparatedPrefix, ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		// Envoy ignores case_sensitive for regex matches.
		re, err := compileFull(ps.SafeRegex.GetRegex(), false)
		if err != nil {
			return out, fieldErr(".safe_regex.regex", "%w", err)
		}
		out.kind, out.re = pathRegex, re
	case nil:
		// Envoy: path_specifier is a required oneof.
		return out, fieldErr("", "missing path specifier (prefix, path, safe_regex or path_separated_prefix)")
	default:
		return out, fieldErr("", "path specifier %T: %w", ps, errUnsupported)
	}
	if g := m.GetGrpc(); g != nil {
		if err := checkFields(g); err != nil {
			return out, fieldErr(".grpc", "%w", err)
		}
		out.grpc = true
	}
	for i, h := range m.GetHeaders() {
		hm, err := buildHeaderMatch(h)
		if err != nil {
			return out, fieldErr(fmt.Sprintf(".headers[%d]", i), "%w", err)
		}
		out.headers = append(out.headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		field := fmt.Sprintf(".query_parameters[%d]", i)
		if err := checkFields(q, "name", "string_match", "present_match"); err != nil {
			return out, fieldErr(field, "%w", err)
		}
		if q.GetName() == "" {
			return out, fieldErr(field+".name", "empty")
		}
		qm := queryMatch{name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_PresentMatch:
			// Envoy's QueryParameterMatcher builds a presence check for
			// present_match whatever its value: false matches a present
			// parameter too.
			qm.present = true
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := buildStringMatch(s.StringMatch)
			if err != nil {
				return out, fieldErr(field+".string_match", "%w", err)
			}
			qm.str = sm
		case nil:
			qm.present = true
		}
		out.query = append(out.query, qm)
	}
	for i, dm := range m.GetDynamicMetadata() {
		mm, fe := buildMetadataMatcher(dm)
		if fe != nil {
			fe.field = fmt.Sprintf(".dynamic_metadata[%d]%s", i, fe.field)
			return out, fe
		}
		out.metadata = append(out.metadata, mm)
	}
	return out, nil
}

func buildHeaderMatch(h *routev3.HeaderMatcher) (headerMatch, error) {
	if err := checkFields(h, "name", "exact_match", "safe_regex_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return headerMatch{}, err
	}
	name := h.GetName()
	if name == "" {
		return headerMatch{}, fmt.Errorf("name is empty")
	}
	if !strings.HasPrefix(name, ":") {
		name = http.CanonicalHeaderKey(name)
	}
	hm := headerMatch{name: name, invert: h.GetInvertMatch(), missingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	var sm *matcherv3.StringMatcher
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = true
		hm.invert = hm.invert != !s.PresentMatch
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
		hm.present = true
		return hm, nil
	default:
		return hm, fmt.Errorf("header match %T: %w", s, errUnsupported)
	}
	str, err := buildStringMatch(sm)
	if err != nil {
		return hm, fmt.Errorf("string_match: %w", err)
	}
	hm.str = str
	return hm, nil
}

func buildStringMatch(sm *matcherv3.StringMatcher) (*stringMatch, error) {
	if err := checkFields(sm, "exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"); err != nil {
		return nil, err
	}
	out := &stringMatch{ignoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.kind, out.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.kind, out.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.kind, out.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.kind, out.value = strContains, p.Contains
		if out.ignoreCase {
			out.value = lowerASCII(p.Contains)
		}
	case *matcherv3.StringMatcher_SafeRegex:
		// ignore_case has no effect on safe_regex in Envoy.
		re, err := compileFull(p.SafeRegex.GetRegex(), false)
		if err != nil {
			return nil, err
		}
		out.kind, out.re = strRegex, re
	default:
		return nil, fmt.Errorf("match pattern %T: %w", p, errUnsupported)
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

// grpcTimeout parses a grpc-timeout header value ("100m", "5S").
func grpcTimeout(v string) (time.Duration, bool) {
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

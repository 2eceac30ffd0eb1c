package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// routeTable is a built RouteConfiguration: virtual hosts indexed for
// Envoy's domain matching order (exact, *.suffix, prefix*, *).
type routeTable struct {
	name     string
	exact    map[string]*virtualHost
	suffixes []wildcardDomain // "*.suffix" stored as ".suffix", longest first
	prefixes []wildcardDomain // "prefix*" stored as "prefix", longest first
	star     *virtualHost
}

type wildcardDomain struct {
	pattern string
	vh      *virtualHost
}

// virtualHost is a built VirtualHost: routes in order, first match wins.
type virtualHost struct {
	name   string
	routes []*route
}

// route is one built Route.
type route struct {
	name          string
	match         routeMatch
	clusters      []weightedCluster // one entry for route.cluster
	totalWeight   uint32
	timeout       time.Duration // 0: none
	prefixRewrite string
	hostRewrite   string
}

type weightedCluster struct {
	cluster *cluster
	// upto is the cumulative weight up to and including this cluster.
	upto uint32
}

type pathKind int

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

type routeMatch struct {
	kind       pathKind
	value      string
	re         *regexp.Regexp
	ignoreCase bool
	headers    []headerMatch
}

type headerMatch struct {
	name    string // canonical header name, or a pseudo-header (":authority")
	present bool   // present_match
	str     *stringMatch
	invert  bool
}

type stringKind int

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

type stringMatch struct {
	kind       stringKind
	value      string
	re         *regexp.Regexp
	ignoreCase bool
}

// findVirtualHost matches host (the request's authority, as written)
// against the table's domains in Envoy's order. Matching ignores case.
func (t *routeTable) findVirtualHost(host string) *virtualHost {
	host = lowerASCII(host)
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > len(w.pattern) && strings.HasSuffix(host, w.pattern) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(host) > len(w.pattern) && strings.HasPrefix(host, w.pattern) {
			return w.vh
		}
	}
	return t.star
}

// lowerASCII lowercases s without allocating when it is already lowercase.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// findRoute returns the first route of vh that matches r.
func (vh *virtualHost) findRoute(r *http.Request) *route {
	path := r.URL.EscapedPath()
	for _, rt := range vh.routes {
		if rt.match.matches(r, path) {
			return rt
		}
	}
	return nil
}

func (m *routeMatch) matches(r *http.Request, path string) bool {
	switch m.kind {
	case pathPrefix:
		if !hasPrefix(path, m.value, m.ignoreCase) {
			return false
		}
	case pathExact:
		if len(path) != len(m.value) || !hasPrefix(path, m.value, m.ignoreCase) {
			return false
		}
	case pathSeparatedPrefix:
		if !hasPrefix(path, m.value, m.ignoreCase) || (len(path) > len(m.value) && path[len(m.value)] != '/') {
			return false
		}
	case pathRegex:
		if !m.re.MatchString(path) {
			return false
		}
	}
	for i := range m.headers {
		if !m.headers[i].matches(r) {
			return false
		}
	}
	return true
}

func hasPrefix(s, prefix string, ignoreCase bool) bool {
	if ignoreCase {
		return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
	}
	return strings.HasPrefix(s, prefix)
}

func (h *headerMatch) matches(r *http.Request) bool {
	value, ok := headerValue(r, h.name)
	var match bool
	switch {
	case h.present:
		match = ok
	case !ok:
		match = false
	default:
		match = h.str.matches(value)
	}
	return match != h.invert
}

// headerValue returns a request header as Envoy sees it: pseudo-headers
// from the request line, repeated headers joined with ",".
func headerValue(r *http.Request, name string) (string, bool) {
	switch name {
	case ":authority":
		return r.Host, true
	case ":method":
		return r.Method, true
	case ":path":
		return r.URL.RequestURI(), true
	case ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vs, ok := r.Header[name]
	switch {
	case !ok:
		return "", false
	case len(vs) == 1:
		return vs[0], true
	default:
		return strings.Join(vs, ","), true
	}
}

func (s *stringMatch) matches(v string) bool {
	switch s.kind {
	case strExact:
		if s.ignoreCase {
			return strings.EqualFold(v, s.value)
		}
		return v == s.value
	case strPrefix:
		return hasPrefix(v, s.value, s.ignoreCase)
	case strSuffix:
		if s.ignoreCase {
			return len(v) >= len(s.value) && strings.EqualFold(v[len(v)-len(s.value):], s.value)
		}
		return strings.HasSuffix(v, s.value)
	case strContains:
		if s.ignoreCase {
			return strings.Contains(strings.ToLower(v), s.value)
		}
		return strings.Contains(v, s.value)
	case strRegex:
		return s.re.MatchString(v)
	}
	return false
}

// pickCluster returns the route's cluster; for weighted_clusters a weighted
// random pick.
func (rt *route) pickCluster() *cluster {
	if len(rt.clusters) == 1 {
		return rt.clusters[0].cluster
	}
	n := rand.Uint32N(rt.totalWeight)
	for _, wc := range rt.clusters {
		if n < wc.upto {
			return wc.cluster
		}
	}
	return rt.clusters[len(rt.clusters)-1].cluster
}

// buildRouteTable validates a RouteConfiguration against the known clusters.
func buildRouteTable(rc *routev3.RouteConfiguration, clusters map[string]*cluster) (*routeTable, *fieldError) {
	if err := checkFields(rc, "name", "virtual_hosts", "validate_clusters"); err != nil {
		return nil, &fieldError{err: err}
	}
	t := &routeTable{name: rc.GetName(), exact: map[string]*virtualHost{}}
	seen := map[string]string{}
	for i, v := range rc.GetVirtualHosts() {
		field := fmt.Sprintf("virtual_hosts[%d]", i)
		if err := checkFields(v, "name", "domains", "routes"); err != nil {
			return nil, &fieldError{field: field, err: err}
		}
		vh := &virtualHost{name: v.GetName()}
		for j, r := range v.GetRoutes() {
			rt, fe := buildRoute(r, clusters)
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
			d = strings.ToLower(d)
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
func buildRoute(r *routev3.Route, clusters map[string]*cluster) (*route, *fieldError) {
	if err := checkFields(r, "name", "match", "route", "metadata", "decorator"); err != nil {
		if r.GetRoute() == nil {
			return nil, fieldErr(".action", "unknown route action (only route is supported): %w", err)
		}
		return nil, &fieldError{err: err}
	}
	if r.GetRoute() == nil {
		return nil, fieldErr(".action", "missing route action")
	}
	rt := &route{name: r.GetName(), timeout: defaultRouteTimeout}
	m, fe := buildMatch(r.GetMatch())
	if fe != nil {
		fe.field = ".match" + fe.field
		return nil, fe
	}
	rt.match = m
	a := r.GetRoute()
	if err := checkFields(a, "cluster", "weighted_clusters", "timeout", "prefix_rewrite", "host_rewrite_literal"); err != nil {
		return nil, &fieldError{field: ".route", err: err}
	}
	if d := a.GetTimeout(); d != nil {
		rt.timeout = d.AsDuration()
	}
	rt.prefixRewrite = a.GetPrefixRewrite()
	rt.hostRewrite = a.GetHostRewriteLiteral()
	lookup := func(field, name string) (*cluster, *fieldError) {
		c, ok := clusters[name]
		if !ok {
			return nil, fieldErr(field, "unknown cluster %q", name)
		}
		return c, nil
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		c, fe := lookup(".route.cluster", cs.Cluster)
		if fe != nil {
			return nil, fe
		}
		rt.clusters = []weightedCluster{{cluster: c, upto: 1}}
		rt.totalWeight = 1
	case *routev3.RouteAction_WeightedClusters:
		wcs := cs.WeightedClusters
		if err := checkFields(wcs, "clusters", "total_weight"); err != nil {
			return nil, &fieldError{field: ".route.weighted_clusters", err: err}
		}
		for i, w := range wcs.GetClusters() {
			field := fmt.Sprintf(".route.weighted_clusters.clusters[%d]", i)
			if err := checkFields(w, "name", "weight"); err != nil {
				return nil, &fieldError{field: field, err: err}
			}
			c, fe := lookup(field+".name", w.GetName())
			if fe != nil {
				return nil, fe
			}
			if w.GetWeight().GetValue() == 0 {
				continue
			}
			rt.totalWeight += w.GetWeight().GetValue()
			rt.clusters = append(rt.clusters, weightedCluster{cluster: c, upto: rt.totalWeight})
		}
		if rt.totalWeight == 0 {
			return nil, fieldErr(".route.weighted_clusters", "weights sum to 0")
		}
		if tw := wcs.GetTotalWeight().GetValue(); tw != 0 && tw != rt.totalWeight {
			return nil, fieldErr(".route.weighted_clusters.total_weight", "%d, but the weights sum to %d", tw, rt.totalWeight)
		}
	default:
		return nil, fieldErr(".route", "cluster specifier %T: %w", cs, errUnsupported)
	}
	return rt, nil
}

func buildMatch(m *routev3.RouteMatch) (routeMatch, *fieldError) {
	var out routeMatch
	if err := checkFields(m, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers"); err != nil {
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
		re, err := compileFull(ps.SafeRegex.GetRegex(), out.ignoreCase)
		if err != nil {
			return out, fieldErr(".safe_regex.regex", "%w", err)
		}
		out.kind, out.re = pathRegex, re
	default:
		return out, fieldErr("", "path specifier %T: %w", ps, errUnsupported)
	}
	for i, h := range m.GetHeaders() {
		hm, err := buildHeaderMatch(h)
		if err != nil {
			return out, fieldErr(fmt.Sprintf(".headers[%d]", i), "%w", err)
		}
		out.headers = append(out.headers, hm)
	}
	return out, nil
}

func buildHeaderMatch(h *routev3.HeaderMatcher) (headerMatch, error) {
	if err := checkFields(h, "name", "exact_match", "safe_regex_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match", "invert_match"); err != nil {
		return headerMatch{}, err
	}
	name := h.GetName()
	if name == "" {
		return headerMatch{}, fmt.Errorf("name is empty")
	}
	if !strings.HasPrefix(name, ":") {
		name = http.CanonicalHeaderKey(name)
	}
	hm := headerMatch{name: name, invert: h.GetInvertMatch()}
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
			out.value = strings.ToLower(p.Contains)
		}
	case *matcherv3.StringMatcher_SafeRegex:
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
	prefix := ""
	if ignoreCase {
		prefix = "(?i)"
	}
	re, err := regexp.Compile(prefix + "^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("compiling regex %q: %w", expr, err)
	}
	return re, nil
}

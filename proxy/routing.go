package proxy

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"time"
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
	// requireTLS redirects plaintext requests to https (require_tls ALL).
	requireTLS bool
}

// virtualHost is a built VirtualHost: routes in order, first match wins.
// (See below for the fields beyond name and routes.)

// routeActionKind is what a matched route does.
type routeActionKind int

const (
	actionForward  routeActionKind = iota // route: forward to a cluster
	actionRedirect                        // redirect: answer with a Location
	actionDirect                          // direct_response: answer inline
)

// route is one built Route.
type route struct {
	name   string
	match  routeMatch
	action routeActionKind

	// Forwarding (action route).
	clusters    []weightedCluster // one entry for route.cluster
	totalWeight uint32
	timeout     time.Duration // 0: none
	// clusterNotFoundCode answers a request whose picked cluster is
	// missing (cluster_not_found_response_code, 503 by default).
	clusterNotFoundCode int
	// maxGRPCTimeout is max_grpc_timeout: when set, gRPC requests use their
	// grpc-timeout header (infinite when absent), capped by it unless 0.
	maxGRPCTimeout *time.Duration
	prefixRewrite  *string
	regexRewrite   *regexRewrite
	hostRewrite    string
	retry          *retryPolicy
	mirrors        []*mirrorPolicy
	hashPolicies   []hashPolicy

	redirect *redirectAction
	direct   *directResponse

	// headers are the header mutations of the route's levels.
	headers headerLevels
	// fault is the most specific typed_per_filter_config of the fault
	// filter (route, virtual host, route configuration); nil: the
	// listener's filter config applies. faultDisabled turns it off.
	fault         *faultConfig
	faultDisabled bool
	// cors is the merged route and virtual host CORS policy; nil: none.
	cors *corsPolicy
}

type weightedCluster struct {
	cluster *cluster
	// upto is the cumulative weight up to and including this cluster.
	upto            uint32
	requestHeaders  *headerMutation
	responseHeaders *headerMutation
	hostRewrite     string
}

// regexRewrite is a built RegexMatchAndSubstitute, with the substitution
// in Go's syntax.
type regexRewrite struct {
	re  *regexp.Regexp
	sub string
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
	query      []queryMatch
	grpc       bool
	// metadata are dynamic_metadata matchers, read from the metadata the
	// jwt_authn filter wrote (see metadataOf).
	metadata []*metadataMatcher
}

// queryMatch is a built QueryParameterMatcher. Values are compared as they
// appear in the query string (not URL-decoded), as Envoy does.
type queryMatch struct {
	name    string
	present bool
	str     *stringMatch
}

// headerMatch is a built HeaderMatcher. invert already folds in
// present_match: false (a "present" match inverted).
type headerMatch struct {
	name    string // canonical header name, or a pseudo-header (":authority")
	present bool   // present_match
	str     *stringMatch
	invert  bool
	// missingAsEmpty is treat_missing_header_as_empty: a request without
	// the header is matched as if it carried it with an empty value.
	missingAsEmpty bool
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
// against the table's domains in Envoy's order. Matching ignores ASCII case.
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

// lowerASCII lowercases the ASCII letters of s, as Envoy's case-insensitive
// matching does (strings.ToLower would also fold "\u212a", the Kelvin sign,
// to "k"), without allocating when there are none in upper case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// equalFoldASCII is strings.EqualFold for ASCII letters only.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
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
	if m.grpc && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return false
	}
	for i := range m.query {
		if !m.query[i].matches(r.URL.RawQuery) {
			return false
		}
	}
	if len(m.metadata) > 0 {
		md := metadataOf(r)
		for _, mm := range m.metadata {
			if !mm.matches(md) {
				return false
			}
		}
	}
	return true
}

// matchedPrefixLen is the length of the start of path (without its query)
// that a prefix_rewrite replaces, as Envoy's
// currentUrlPathAfterRewriteWithMatchedPath: the configured prefix, path
// or path_separated_prefix (its length, whatever the case of the request),
// and for a safe_regex match the whole path, so that a prefix_rewrite on a
// regex route replaces the path and keeps the query.
func matchedPrefixLen(m *routeMatch, path string) int {
	if m == nil {
		return 0
	}
	if m.kind == pathRegex {
		return len(path)
	}
	return min(len(m.value), len(path))
}

func (q *queryMatch) matches(rawQuery string) bool {
	v, ok := queryValue(rawQuery, q.name)
	if q.present || q.str == nil {
		return ok
	}
	return ok && q.str.matches(v)
}

// queryValue returns the first value of a query parameter, undecoded.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

func hasPrefix(s, prefix string, ignoreCase bool) bool {
	if ignoreCase {
		return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
	}
	return strings.HasPrefix(s, prefix)
}

// matches applies the matcher as Envoy's HeaderUtility does. A missing
// header matches only an inverted presence check (present_match: false,
// or true with invert_match): a value match fails even when inverted,
// unless treat_missing_header_as_empty makes it an empty value (which is
// also "present").
func (h *headerMatch) matches(r *http.Request) bool {
	value, ok := headerValue(r, h.name)
	if !ok && !h.missingAsEmpty {
		return h.present && h.invert
	}
	if h.present {
		return !h.invert
	}
	return h.str.matches(value) != h.invert
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
			return equalFoldASCII(v, s.value)
		}
		return v == s.value
	case strPrefix:
		return hasPrefix(v, s.value, s.ignoreCase)
	case strSuffix:
		if s.ignoreCase {
			return len(v) >= len(s.value) && equalFoldASCII(v[len(v)-len(s.value):], s.value)
		}
		return strings.HasSuffix(v, s.value)
	case strContains:
		if s.ignoreCase {
			return strings.Contains(lowerASCII(v), s.value)
		}
		return strings.Contains(v, s.value)
	case strRegex:
		return s.re.MatchString(v)
	}
	return false
}

// pickCluster returns the route's cluster; for weighted_clusters a weighted
// random pick.
func (rt *route) pickCluster() *weightedCluster {
	if len(rt.clusters) == 1 {
		return &rt.clusters[0]
	}
	n := rand.Uint32N(rt.totalWeight)
	for i := range rt.clusters {
		if n < rt.clusters[i].upto {
			return &rt.clusters[i]
		}
	}
	return &rt.clusters[len(rt.clusters)-1]
}

package routing

import (
	"github.com/gitmesh/gitmesh/proxy/match"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// RouteTable is a built RouteConfiguration: virtual hosts indexed for
// Envoy's domain matching order (exact, *.suffix, prefix*, *).
type RouteTable struct {
	// Name is the RouteConfiguration's name.
	Name string
	// Exact maps lowercased domains to their virtual host.
	Exact    map[string]*VirtualHost
	Suffixes []WildcardDomain // "*.suffix" stored as ".suffix", longest first
	Prefixes []WildcardDomain // "prefix*" stored as "prefix", longest first
	// Star is the virtual host of domain "*", nil for none.
	Star *VirtualHost
}

// WildcardDomain is a "*.suffix" or "prefix*" domain and its virtual host.
type WildcardDomain struct {
	Pattern     string
	VirtualHost *VirtualHost
}

// VirtualHost is a built VirtualHost: routes in order, first match wins.
type VirtualHost struct {
	Name string
	// Routes are tried in order; the first that matches serves.
	Routes []*Route
	// RequireTLS redirects plaintext requests to https (require_tls ALL).
	RequireTLS bool
}

// virtualHost is a built VirtualHost: routes in order, first match wins.
// (See below for the fields beyond name and routes.)

// RouteActionKind is what a matched route does.
type RouteActionKind int

const (
	ActionForward  RouteActionKind = iota // route: forward to a cluster
	ActionRedirect                        // redirect: answer with a Location
	ActionDirect                          // direct_response: answer inline
)

// Route is one built Route.
type Route struct {
	Name  string
	Match RouteMatch
	// Action is what the route does: forward, redirect or respond directly.
	Action RouteActionKind

	// Forwarding (action route).
	Clusters []WeightedCluster // one entry for route.cluster
	// TotalWeight is the sum of the clusters' weights.
	TotalWeight uint32
	Timeout     time.Duration // 0: none
	// ClusterNotFoundCode answers a request whose picked cluster is
	// missing (cluster_not_found_response_code, 503 by default).
	ClusterNotFoundCode int
	// MaxGRPCTimeout is max_grpc_timeout: when set, gRPC requests use their
	// grpc-timeout header (infinite when absent), capped by it unless 0.
	MaxGRPCTimeout *time.Duration
	// PrefixRewrite, RegexRewrite and HostRewrite are the route action's
	// rewrites (nil, nil, "": none).
	PrefixRewrite *string
	RegexRewrite  *RegexRewrite
	HostRewrite   string
	Retry         *RetryPolicy
	Mirrors       []*MirrorPolicy
	// HashPolicies are the hash_policy entries, for the ring hash and
	// Maglev load balancers.
	HashPolicies []upstream.HashPolicy

	// Redirect and Direct are the actions of redirect and
	// direct_response routes.
	Redirect *RedirectAction
	Direct   *DirectResponse

	// Headers are the header mutations of the route's levels.
	Headers HeaderLevels
	// Fault is the most specific typed_per_filter_config of the fault
	// filter (route, virtual host, route configuration); nil: the
	// listener's filter config applies. faultDisabled turns it off.
	Fault *FaultConfig
	// FaultDisabled is a route whose typed_per_filter_config disables the
	// fault filter.
	FaultDisabled bool
	// CORS is the merged route and virtual host CORS policy; nil: none.
	CORS *CORSPolicy
}

// WeightedCluster is one of a route's clusters with its weight and the
// header mutations and host rewrite of that choice.
type WeightedCluster struct {
	Cluster *upstream.Cluster
	// Upto is the cumulative weight up to and including this cluster.
	Upto            uint32
	RequestHeaders  *HeaderMutation
	ResponseHeaders *HeaderMutation
	HostRewrite     string
}

// RegexRewrite is a built RegexMatchAndSubstitute, with the substitution
// in Go's syntax.
type RegexRewrite struct {
	// Re and Substitution are regex_rewrite's pattern and substitution.
	Re           *regexp.Regexp
	Substitution string
}

// PathKind is the path specifier of a RouteMatch.
type PathKind int

const (
	// The path specifiers: prefix, path, safe_regex and path_separated_prefix.
	PathPrefix PathKind = iota
	PathExact
	PathRegex
	PathSeparatedPrefix
)

// RouteMatch is a built RouteMatch: the path specifier and the headers,
// query parameters and gRPC condition, all of which must match.
type RouteMatch struct {
	Kind  PathKind
	Value string
	Re    *regexp.Regexp
	// IgnoreCase is case_sensitive false, for prefix and path.
	IgnoreCase bool
	Headers    []HeaderMatch
	Query      []QueryMatch
	// GRPC matches only gRPC requests (content-type application/grpc).
	GRPC bool
	// Metadata are dynamic_metadata matchers, read from the metadata the
	// jwt_authn filter wrote (see metadataOf).
	Metadata []*MetadataMatcher
}

// QueryMatch is a built QueryParameterMatcher. Values are compared as they
// appear in the query string (not URL-decoded), as Envoy does.
type QueryMatch struct {
	Name string
	// Present is present_match; Str a string_match (neither: present).
	Present bool
	// Str compares the header's value; Invert negates the result.
	Str *match.StringMatch
}

// HeaderMatch is a built HeaderMatcher. invert already folds in
// present_match: false (a "present" match inverted).
type HeaderMatch struct {
	Name    string // canonical header name, or a pseudo-header (":authority")
	Present bool   // present_match
	Str     *match.StringMatch
	Invert  bool
	// MissingAsEmpty is treat_missing_header_as_empty: a request without
	// the header is matched as if it carried it with an empty value.
	MissingAsEmpty bool
}

// FindVirtualHost matches host (the request's authority, as written)
// against the table's domains in Envoy's order. Matching ignores ASCII case.
func (t *RouteTable) FindVirtualHost(host string) *VirtualHost {
	host = match.LowerASCII(host)
	if vh, ok := t.Exact[host]; ok {
		return vh
	}
	for _, w := range t.Suffixes {
		if len(host) > len(w.Pattern) && strings.HasSuffix(host, w.Pattern) {
			return w.VirtualHost
		}
	}
	for _, w := range t.Prefixes {
		if len(host) > len(w.Pattern) && strings.HasPrefix(host, w.Pattern) {
			return w.VirtualHost
		}
	}
	return t.Star
}

// FindRoute returns the first route of vh that matches r.
func (vh *VirtualHost) FindRoute(r *http.Request) *Route {
	path := r.URL.EscapedPath()
	for _, rt := range vh.Routes {
		if rt.Match.Matches(r, path) {
			return rt
		}
	}
	return nil
}

// Matches reports whether r matches; path is its normalized path.
func (m *RouteMatch) Matches(r *http.Request, path string) bool {
	switch m.Kind {
	case PathPrefix:
		if !match.HasPrefix(path, m.Value, m.IgnoreCase) {
			return false
		}
	case PathExact:
		if len(path) != len(m.Value) || !match.HasPrefix(path, m.Value, m.IgnoreCase) {
			return false
		}
	case PathSeparatedPrefix:
		if !match.HasPrefix(path, m.Value, m.IgnoreCase) || (len(path) > len(m.Value) && path[len(m.Value)] != '/') {
			return false
		}
	case PathRegex:
		if !m.Re.MatchString(path) {
			return false
		}
	}
	for i := range m.Headers {
		if !m.Headers[i].Matches(r) {
			return false
		}
	}
	if m.GRPC && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return false
	}
	for i := range m.Query {
		if !m.Query[i].Matches(r.URL.RawQuery) {
			return false
		}
	}
	if len(m.Metadata) > 0 {
		md := metadataOf(r)
		for _, mm := range m.Metadata {
			if !mm.Matches(md) {
				return false
			}
		}
	}
	return true
}

// MatchedPrefixLen is the length of the start of path (without its query)
// that a prefix_rewrite replaces, as Envoy's
// currentUrlPathAfterRewriteWithMatchedPath: the configured prefix, path
// or path_separated_prefix (its length, whatever the case of the request),
// and for a safe_regex match the whole path, so that a prefix_rewrite on a
// regex route replaces the path and keeps the query.
func MatchedPrefixLen(m *RouteMatch, path string) int {
	if m == nil {
		return 0
	}
	if m.Kind == PathRegex {
		return len(path)
	}
	return min(len(m.Value), len(path))
}

// Matches reports whether the query string has a matching parameter.
func (q *QueryMatch) Matches(rawQuery string) bool {
	v, ok := QueryValue(rawQuery, q.Name)
	if q.Present || q.Str == nil {
		return ok
	}
	return ok && q.Str.Matches(v)
}

// QueryValue returns the first value of a query parameter, undecoded.
func QueryValue(rawQuery, name string) (string, bool) {
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

// Matches applies the matcher as Envoy's HeaderUtility does. A missing
// header matches only an inverted presence check (present_match: false,
// or true with invert_match): a value match fails even when inverted,
// unless treat_missing_header_as_empty makes it an empty value (which is
// also "present").
func (h *HeaderMatch) Matches(r *http.Request) bool {
	value, ok := HeaderValue(r, h.Name)
	if !ok && !h.MissingAsEmpty {
		return h.Present && h.Invert
	}
	if h.Present {
		return !h.Invert
	}
	return h.Str.Matches(value) != h.Invert
}

// HeaderValue returns a request header as Envoy sees it: pseudo-headers
// from the request line, repeated headers joined with ",".
func HeaderValue(r *http.Request, name string) (string, bool) {
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

// PickCluster returns the route's cluster; for weighted_clusters a weighted
// random pick.
func (rt *Route) PickCluster() *WeightedCluster {
	if len(rt.Clusters) == 1 {
		return &rt.Clusters[0]
	}
	n := rand.Uint32N(rt.TotalWeight)
	for i := range rt.Clusters {
		if n < rt.Clusters[i].Upto {
			return &rt.Clusters[i]
		}
	}
	return &rt.Clusters[len(rt.Clusters)-1]
}

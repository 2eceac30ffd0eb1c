package proxy

import (
	"net/http"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// envoyCase is one cross-field combination of Envoy resources: Envoy
// accepts it (the proxy must apply it and behave as Envoy does) or rejects
// it (the proxy must NACK it too). See the audit in
// docs/xds-conventions.md.
type envoyCase struct {
	name string
	// route is the only route of virtual host "svc".
	route *routev3.Route
	// cluster adjusts cluster a; filters go before the router.
	cluster  func(*clusterv3.Cluster)
	filters  []*hcmv3.HttpFilter
	listener func(*listenerv3.Listener)
	// routes adjusts the RouteConfiguration.
	routes func(*routev3.RouteConfiguration)

	// protoInvalid: go-control-plane's ValidateAll (Envoy's PGV rules)
	// already rejects it.
	protoInvalid bool
	// nack, when set, is what the proxy's NACK must say; Envoy rejects
	// the combination too.
	nack string

	// A request through the proxy and what Envoy would produce.
	path         string
	header       map[string]string
	wantCode     int
	wantBackend  string
	wantPath     string // request URI the backend saw
	wantHost     string
	wantLocation string
}

func regexMatch(re string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func pathMatch(path string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: path}}
}

const (
	contractA     = "outbound|80||a.default.svc.cluster.local"
	contractB     = "outbound|80||b.default.svc.cluster.local"
	contractFlaky = "outbound|80||flaky.default.svc.cluster.local"
	contractDNS   = "outbound|80||nowhere.example.com"
)

func envoyCases() []envoyCase {
	toA := func(m *routev3.RouteMatch, mutate func(*routev3.RouteAction)) *routev3.Route {
		return withRoute(toCluster(m, contractA), mutate)
	}
	weighted := func(total uint32, weights map[string]uint32) *routev3.Route {
		r := toWeighted(prefixMatch("/"), weights)
		if total > 0 {
			r.GetRoute().GetWeightedClusters().TotalWeight = wrapperspb.UInt32(total)
		}
		return r
	}
	caseless := prefixMatch("/API")
	caseless.CaseSensitive = wrapperspb.Bool(false)
	return []envoyCase{
		// Accepted: path rewrites (Envoy's currentUrlPathAfterRewriteWithMatchedPath).
		{
			name:  "safe_regex + prefix_rewrite replaces the whole path",
			route: toA(regexMatch("/u/[^/]+/profile"), func(a *routev3.RouteAction) { a.PrefixRewrite = "/x" }),
			path:  "/u/ann/profile?q=1", wantCode: 200, wantBackend: "a", wantPath: "/x?q=1",
		},
		{
			name:  "path + prefix_rewrite replaces the path",
			route: toA(pathMatch("/old"), func(a *routev3.RouteAction) { a.PrefixRewrite = "/new" }),
			path:  "/old?a=b", wantCode: 200, wantBackend: "a", wantPath: "/new?a=b",
		},
		{
			name:  "prefix + prefix_rewrite replaces the prefix",
			route: toA(prefixMatch("/api/"), func(a *routev3.RouteAction) { a.PrefixRewrite = "/v2/" }),
			path:  "/api/users", wantCode: 200, wantBackend: "a", wantPath: "/v2/users",
		},
		{
			name:  "case-insensitive prefix + prefix_rewrite replaces as many characters",
			route: toA(caseless, func(a *routev3.RouteAction) { a.PrefixRewrite = "/v1" }),
			path:  "/api/z", wantCode: 200, wantBackend: "a", wantPath: "/v1/z",
		},
		{
			name: "path_separated_prefix + prefix_rewrite",
			route: toA(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/svc"}},
				func(a *routev3.RouteAction) { a.PrefixRewrite = "/backend" }),
			path: "/svc/items", wantCode: 200, wantBackend: "a", wantPath: "/backend/items",
		},
		{
			name:  "prefix / with a header match + prefix_rewrite prepends",
			route: toA(prefixMatch("/", exactHeader("x-user", "ann")), func(a *routev3.RouteAction) { a.PrefixRewrite = "/x" }),
			path:  "/foo", header: map[string]string{"x-user": "ann"}, wantCode: 200, wantBackend: "a", wantPath: "/xfoo",
		},
		{
			name: "prefix + regex_rewrite keeps the query",
			route: toA(prefixMatch("/api/"), func(a *routev3.RouteAction) {
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/api/(.*)$"}, Substitution: `/v2/\1`}
			}),
			path: "/api/users?x=1", wantCode: 200, wantBackend: "a", wantPath: "/v2/users?x=1",
		},
		{
			name: "safe_regex + regex_rewrite",
			route: toA(regexMatch("/u/([^/]+)/profile"), func(a *routev3.RouteAction) {
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/u/([^/]+)/profile$"}, Substitution: `/profiles/\1`}
			}),
			path: "/u/ann/profile", wantCode: 200, wantBackend: "a", wantPath: "/profiles/ann",
		},
		{
			name: "redirect prefix_rewrite on a safe_regex route replaces the whole path",
			route: redirect(regexMatch("/r/[0-9]+"), &routev3.RedirectAction{
				PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/landing"},
			}),
			path: "/r/42?q", wantCode: 301, wantLocation: "http://svc/landing?q",
		},
		{
			name: "host_rewrite_literal without auto_host_rewrite",
			route: toA(prefixMatch("/"), func(a *routev3.RouteAction) {
				a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend.internal"}
			}),
			path: "/h", wantCode: 200, wantBackend: "a", wantPath: "/h", wantHost: "backend.internal",
		},
		{
			name: "query_parameters present_match false is a presence check",
			route: toCluster(&routev3.RouteMatch{
				PathSpecifier:   &routev3.RouteMatch_Prefix{Prefix: "/"},
				QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: false}}},
			}, contractA),
			path: "/qp?q=1", wantCode: 200, wantBackend: "a",
		},
		// Accepted: weighted clusters are relative (total_weight is deprecated).
		{
			name:  "total_weight that is not the sum is ignored",
			route: weighted(100, map[string]uint32{contractA: 10, contractB: 0}),
			path:  "/w", wantCode: 200, wantBackend: "a",
		},
		{
			name:  "weights above 100 are relative",
			route: weighted(0, map[string]uint32{contractA: 150, contractB: 0}),
			path:  "/w", wantCode: 200, wantBackend: "a",
		},
		// Accepted: retry policy variants.
		{
			name: "retry_on with conditions Envoy ignores",
			route: withRoute(toCluster(prefixMatch("/"), contractFlaky), func(a *routev3.RouteAction) {
				a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,retriable-headers,no-such-condition", NumRetries: wrapperspb.UInt32(2)}
			}),
			path: "/retry", wantCode: 200, wantBackend: "flaky",
		},
		{
			name: "retry_back_off with only base_interval",
			route: toA(prefixMatch("/"), func(a *routev3.RouteAction) {
				a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure", RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(1e6)}}
			}),
			path: "/b", wantCode: 200, wantBackend: "a",
		},
		// Accepted: load balancing.
		{
			name:  "ring_hash_lb_config on a ROUND_ROBIN cluster is ignored",
			route: toCluster(prefixMatch("/"), contractA),
			cluster: func(c *clusterv3.Cluster) {
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
			},
			path: "/lb", wantCode: 200, wantBackend: "a",
		},
		{
			name: "hash policy on source_ip false hashes nothing",
			route: toA(prefixMatch("/"), func(a *routev3.RouteAction) {
				a.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
					ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: false},
				}}}
			}),
			cluster: func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RING_HASH },
			path:    "/hash", wantCode: 200, wantBackend: "a",
		},
		// Accepted: listeners and clusters.
		{
			name:    "an optional HTTP filter the proxy does not implement is skipped",
			route:   toCluster(prefixMatch("/"), contractA),
			filters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.example", IsOptional: true}},
			path:    "/opt", wantCode: 200, wantBackend: "a",
		},
		{
			name:  "default_filter_chain serves what no filter chain matches",
			route: toCluster(prefixMatch("/"), contractA),
			listener: func(l *listenerv3.Listener) {
				l.DefaultFilterChain = l.FilterChains[0]
				sni := proto.Clone(l.FilterChains[0]).(*listenerv3.FilterChain)
				sni.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"only.example.com"}, TransportProtocol: "tls"}
				l.FilterChains = []*listenerv3.FilterChain{sni}
			},
			path: "/default", wantCode: 200, wantBackend: "a",
		},
		{
			name:  "default_filter_chain alone",
			route: toCluster(prefixMatch("/"), contractA),
			listener: func(l *listenerv3.Listener) {
				l.DefaultFilterChain, l.FilterChains = l.FilterChains[0], nil
			},
			path: "/default", wantCode: 200, wantBackend: "a",
		},
		{
			name:  "STRICT_DNS cluster without endpoints has no hosts",
			route: toCluster(prefixMatch("/"), contractDNS),
			path:  "/dns", wantCode: 503,
		},

		{
			name:  "a direct_response body of 4 KiB",
			route: direct(prefixMatch("/"), strings.Repeat("x", 4096)),
			path:  "/big", wantCode: 200,
		},
		{
			name:   "a larger body under a raised max_direct_response_body_size_bytes",
			route:  direct(prefixMatch("/"), strings.Repeat("x", 5000)),
			routes: func(rc *routev3.RouteConfiguration) { rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(8192) },
			path:   "/big", wantCode: 200,
		},

		// Rejected by Envoy too.
		{
			name:  "a direct_response body above 4 KiB",
			route: direct(prefixMatch("/"), strings.Repeat("x", 4097)),
			nack:  "response body size is 4097 bytes; maximum is 4096",
		},
		{
			name: "prefix_rewrite with regex_rewrite",
			route: toA(prefixMatch("/"), func(a *routev3.RouteAction) {
				a.PrefixRewrite = "/x"
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "a"}, Substitution: "b"}
			}),
			nack: "prefix_rewrite and regex_rewrite are mutually exclusive",
		},
		{
			name:  "weights that sum to 0",
			route: weighted(0, map[string]uint32{contractA: 0}),
			nack:  "weights sum to 0",
		},
		{
			name:         "a header-only match without a path specifier",
			route:        toCluster(&routev3.RouteMatch{Headers: []*routev3.HeaderMatcher{exactHeader("x-user", "ann")}}, contractA),
			protoInvalid: true,
			nack:         "missing path specifier",
		},
		{
			name: "retry max_interval below base_interval",
			route: toA(prefixMatch("/"), func(a *routev3.RouteAction) {
				a.RetryPolicy = &routev3.RetryPolicy{RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(2e6), MaxInterval: dur(1e6)}}
			}),
			nack: "less than base_interval",
		},
		{
			name:    "a required HTTP filter the proxy does not know",
			route:   toCluster(prefixMatch("/"), contractA),
			filters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.example"}},
			nack:    `unknown HTTP filter "envoy.filters.http.example"`,
		},
	}
}

// contractListener is an outbound listener whose HCM runs filters, then
// the router, over RDS route "outbound".
func contractListener(t testing.TB, addr string, filters []*hcmv3.HttpFilter) *listenerv3.Listener {
	l := hcmListener(t, "outbound", addr, "outbound")
	if len(filters) == 0 {
		return l
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters = append(append([]*hcmv3.HttpFilter{}, filters...),
		&hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}})
	l.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, hcm)}
	return l
}

// resourceSetOf is the accepted set a proxy holds after receiving res.
func resourceSetOf(res []types.Resource) *config.ResourceSet {
	set := config.NewResourceSet()
	for _, t := range config.XDSTypes {
		set.Received[t] = true
	}
	for _, r := range res {
		var typeURL string
		switch r.(type) {
		case *listenerv3.Listener:
			typeURL = config.ListenerType
		case *routev3.RouteConfiguration:
			typeURL = config.RouteType
		case *clusterv3.Cluster:
			typeURL = config.ClusterType
		case *endpointv3.ClusterLoadAssignment:
			typeURL = config.EndpointType
		}
		set.ByType[typeURL][config.ResourceName(r)] = r
	}
	return set
}

// TestEnvoyContract checks each envoyCase against Envoy's behaviour: its
// resources pass (or fail) go-control-plane's ValidateAll as in Envoy, the
// proxy NACKs exactly what Envoy rejects, and for what it accepts a real
// request through the proxy reaches the backend with the path, host or
// redirect Envoy would produce.
func TestEnvoyContract(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	a, b := echo(t, "a", nil), echo(t, "b", nil)
	flaky := echo(t, "flaky", failing(1, http.StatusServiceUnavailable))
	for _, tc := range envoyCases() {
		t.Run(tc.name, func(t *testing.T) {
			ca := staticCluster(t, contractA, "a.default.svc.cluster.local", []string{hostPort(a)})
			if tc.cluster != nil {
				tc.cluster(ca)
			}
			dns := inlineCluster(t, contractDNS, clusterv3.Cluster_STRICT_DNS)
			dns.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: contractDNS}
			rc := routeConfig("outbound", vhost("svc", []string{"svc"}, tc.route))
			if tc.routes != nil {
				tc.routes(rc)
			}
			l := contractListener(t, r.out, tc.filters)
			if tc.listener != nil {
				tc.listener(l)
			}
			res := []types.Resource{
				l,
				rc,
				ca,
				staticCluster(t, contractB, "b.default.svc.cluster.local", []string{hostPort(b)}),
				staticCluster(t, contractFlaky, "flaky.default.svc.cluster.local", []string{hostPort(flaky)}),
				dns,
			}
			var protoErrs []string
			for _, m := range res {
				if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
					protoErrs = append(protoErrs, err.Error())
				}
			}
			if got := len(protoErrs) > 0; got != tc.protoInvalid {
				t.Errorf("ValidateAll errors %q; want invalid=%v", protoErrs, tc.protoInvalid)
			}
			_, _, err := config.BuildConfig(resourceSetOf(res), nil)
			if tc.nack != "" {
				if err == nil || !strings.Contains(err.Error(), tc.nack) {
					t.Fatalf("build error %v; want a NACK containing %q", err, tc.nack)
				}
				return
			}
			if err != nil {
				t.Fatalf("the proxy would NACK what Envoy accepts: %v", err)
			}
			r.push(res...)
			resp, _ := r.get("GET", "svc", tc.path, tc.header)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("GET %s: status %d; want %d", tc.path, resp.StatusCode, tc.wantCode)
			}
			for _, c := range []struct{ what, got, want string }{
				{"backend", backendOf(resp), tc.wantBackend},
				{"path seen by the backend", resp.Header.Get("X-Seen-Path"), tc.wantPath},
				{"host seen by the backend", resp.Header.Get("X-Seen-Host"), tc.wantHost},
				{"location", resp.Header.Get("Location"), tc.wantLocation},
			} {
				if c.want != "" && c.got != c.want {
					t.Errorf("GET %s: %s %q; want %q", tc.path, c.what, c.got, c.want)
				}
			}
		})
	}
}

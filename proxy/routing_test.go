package proxy

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestFindVirtualHost(t *testing.T) {
	clusters := map[string]*upstream.Cluster{"c": {Name: "c"}}
	route := toCluster(prefixMatch("/"), "c")
	rc := routeConfig("r",
		vhost("exact", []string{"api.example.com", "reviews:9080"}, route),
		vhost("suffix", []string{"*.example.com"}, route),
		vhost("longer-suffix", []string{"*.v1.example.com"}, route),
		vhost("prefix", []string{"api.*"}, route),
		vhost("longer-prefix", []string{"api.v2.*"}, route),
		vhost("star", []string{"*"}, route),
	)
	rt, fe := config.BuildRouteTable(rc, config.NewClusterRefs(clusters), false)
	if fe != nil {
		t.Fatal(fe.Err)
	}
	tests := []struct{ host, want string }{
		{"api.example.com", "exact"},
		{"API.Example.com", "exact"},
		{"reviews:9080", "exact"},
		{"reviews", "star"},
		{"www.example.com", "suffix"},
		{"a.v1.example.com", "longer-suffix"},
		{"example.com", "star"}, // "*.example.com" needs a non-empty label
		{"api.other.org", "prefix"},
		{"api.v2.other.org", "longer-prefix"},
		{"api.example.org", "prefix"},
		{"x", "star"},
	}
	for _, tt := range tests {
		if got := rt.FindVirtualHost(tt.host); got == nil || got.Name != tt.want {
			t.Errorf("findVirtualHost(%q) = %v; want %q", tt.host, got, tt.want)
		}
	}
}

func TestRouteMatch(t *testing.T) {
	clusters := map[string]*upstream.Cluster{"a": {Name: "a"}, "b": {Name: "b"}}
	present := &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	exactPath := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "b"}}}}
	exactPath.Name = "exact-path"
	routes := []*routev3.Route{
		named("header", toCluster(prefixMatch("/", exactHeader("end-user", "jason")), "b")),
		named("present", toCluster(prefixMatch("/", present), "b")),
		exactPath,
		named("prefix", toCluster(prefixMatch("/api"), "b")),
		named("default", toCluster(prefixMatch("/"), "a")),
	}
	rt, fe := config.BuildRouteTable(routeConfig("r", vhost("v", []string{"*"}, routes...)), config.NewClusterRefs(clusters), false)
	if fe != nil {
		t.Fatal(fe.Err)
	}
	tests := []struct {
		path string
		hdr  map[string]string
		want string
	}{
		{"/", map[string]string{"End-User": "jason"}, "header"},
		{"/", map[string]string{"end-user": "Jason"}, "default"},
		{"/", map[string]string{"x-canary": ""}, "present"},
		{"/exact?q=1", nil, "exact-path"},
		{"/exact/more", nil, "default"},
		{"/api/v1", nil, "prefix"},
		{"/apix", nil, "prefix"},
		{"/other", nil, "default"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://h"+tt.path, nil)
		for k, v := range tt.hdr {
			req.Header.Set(k, v)
		}
		if got := rt.Star.FindRoute(req); got == nil || got.Name != tt.want {
			t.Errorf("%s %v: route %v; want %q", tt.path, tt.hdr, got, tt.want)
		}
	}
}

func named(name string, r *routev3.Route) *routev3.Route { r.Name = name; return r }

func TestBuildRouteTableErrors(t *testing.T) {
	clusters := map[string]*upstream.Cluster{"a": {Name: "a"}}
	overflow := toWeighted(prefixMatch("/"), map[string]uint32{"a": math.MaxUint32, "b": 1})
	hedge := toCluster(prefixMatch("/"), "a")
	hedge.GetRoute().IdleTimeout = durationpb.New(time.Second)
	tests := []struct {
		name    string
		rc      *routev3.RouteConfiguration
		wantErr string
	}{
		{"duplicate domain", routeConfig("r", vhost("x", []string{"a"}), vhost("y", []string{"A"})), `virtual_hosts[1].domains[0]: domain "a" is also in virtual host "x"`},
		{"unknown cluster with validate_clusters", validated(routeConfig("r", vhost("x", []string{"a"}, toCluster(prefixMatch("/"), "nope")))), `virtual_hosts[0].routes[0].route.cluster: unknown cluster "nope"`},
		{"weighted unknown cluster with validate_clusters", validated(routeConfig("r", vhost("x", []string{"a"}, toWeighted(prefixMatch("/"), map[string]uint32{"a": 50, "b": 50})))), `weighted_clusters.clusters[1].name: unknown cluster "b"`},
		{"empty cluster name", routeConfig("r", vhost("x", []string{"a"}, toCluster(prefixMatch("/"), ""))), `virtual_hosts[0].routes[0].route.cluster: empty cluster name`},
		{"weights overflow", routeConfig("r", vhost("x", []string{"a"}, overflow)), `weighted_clusters: the weights sum to more than 4294967295`},
		{"route idle timeout", routeConfig("r", vhost("x", []string{"a"}, hedge)), `routes[0].route: field idle_timeout: not supported`},
		{"filter action", routeConfig("r", vhost("x", []string{"a"}, &routev3.Route{Match: prefixMatch("/"), Action: &routev3.Route_FilterAction{FilterAction: &routev3.FilterAction{}}})), `unknown route action`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fe := config.BuildRouteTable(tt.rc, config.NewClusterRefs(clusters), false)
			if fe == nil {
				t.Fatalf("no error; want %q", tt.wantErr)
			}
			if got := fe.Field + ": " + fe.Err.Error(); !strings.Contains(got, tt.wantErr) {
				t.Errorf("error = %q; want it to contain %q", got, tt.wantErr)
			}
		})
	}
}

// validated sets validate_clusters on rc.
func validated(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	rc.ValidateClusters = wrapperspb.Bool(true)
	return rc
}

// TestUnknownClusterWarms: a route table naming a cluster CDS has not
// delivered builds, with a placeholder the caller reports as missing,
// unless clusters are validated (validate_clusters, or an inline
// route_config where Envoy defaults it to true).
func TestUnknownClusterWarms(t *testing.T) {
	rc := func() *routev3.RouteConfiguration {
		return routeConfig("r", vhost("x", []string{"*"},
			toWeighted(prefixMatch("/"), map[string]uint32{"a": 50, "later": 50})))
	}
	refs := config.NewClusterRefs(map[string]*upstream.Cluster{"a": {Name: "a"}})
	rt, fe := config.BuildRouteTable(rc(), refs, false)
	if fe != nil {
		t.Fatalf("RDS route table: %s: %v", fe.Field, fe.Err)
	}
	if got := config.SortedKeys(refs.Missing); len(got) != 1 || got[0] != "later" {
		t.Errorf("missing clusters = %v; want [later]", got)
	}
	if c := rt.Star.Routes[0].Clusters[1].Cluster; c.Name != "later" || !c.Missing {
		t.Errorf("weighted cluster 1 = %+v; want the placeholder of \"later\"", c)
	}
	if rt.Star.Routes[0].ClusterNotFoundCode != http.StatusServiceUnavailable {
		t.Errorf("cluster_not_found_response_code = %d; want 503", rt.Star.Routes[0].ClusterNotFoundCode)
	}
	if _, fe := config.BuildRouteTable(rc(), config.NewClusterRefs(nil), true); fe == nil {
		t.Errorf("inline route_config with an unknown cluster built; want an error (validate_clusters defaults to true)")
	}
	off := rc()
	off.ValidateClusters = wrapperspb.Bool(false)
	if _, fe := config.BuildRouteTable(off, config.NewClusterRefs(nil), true); fe != nil {
		t.Errorf("inline route_config with validate_clusters false: %v", fe.Err)
	}
}

func TestEndpointSetWeights(t *testing.T) {
	a, b, c := &upstream.Endpoint{Addr: "a"}, &upstream.Endpoint{Addr: "b"}, &upstream.Endpoint{Addr: "c"}
	tests := []struct {
		name    string
		eps     []*upstream.Endpoint
		weights []uint32
		picks   int
		want    map[string]int
	}{
		{"equal weights are round-robin", []*upstream.Endpoint{a, b, c}, []uint32{1, 1, 1}, 9, map[string]int{"a": 3, "b": 3, "c": 3}},
		{"weights honoured exactly per cycle", []*upstream.Endpoint{a, b}, []uint32{1, 3}, 400, map[string]int{"a": 100, "b": 300}},
		{"gcd reduced", []*upstream.Endpoint{a, b}, []uint32{20, 80}, 5, map[string]int{"a": 1, "b": 4}},
		{"huge weights scaled", []*upstream.Endpoint{a, b}, []uint32{1_000_000, 3_000_000}, 4096, map[string]int{"a": 1024, "b": 3072}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := upstream.NewEndpointSet(tt.eps, tt.weights)
			got := map[string]int{}
			for range tt.picks {
				got[s.Pick(nil).Addr]++
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("picks = %v; want %v", got, tt.want)
					break
				}
			}
		})
	}
	if upstream.NewEndpointSet(nil, nil).Pick(nil) != nil {
		t.Error("empty set picked an endpoint")
	}
	// Smooth: with weights 1:3 the light endpoint is never picked twice in a row.
	s := upstream.NewEndpointSet([]*upstream.Endpoint{a, b}, []uint32{1, 3})
	prev := ""
	for range 40 {
		e := s.Pick(nil).Addr
		if e == "a" && prev == "a" {
			t.Fatal("schedule not interleaved")
		}
		prev = e
	}
}

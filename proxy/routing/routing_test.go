package routing_test

import (
	"net/http"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

func TestFindVirtualHost(t *testing.T) {
	clusters := map[string]*upstream.Cluster{"c": {Name: "c"}}
	route := prototest.ToCluster(prototest.PrefixMatch("/"), "c")
	rc := prototest.RouteConfig("r",
		prototest.VirtualHost("exact", []string{"api.example.com", "reviews:9080"}, route),
		prototest.VirtualHost("suffix", []string{"*.example.com"}, route),
		prototest.VirtualHost("longer-suffix", []string{"*.v1.example.com"}, route),
		prototest.VirtualHost("prefix", []string{"api.*"}, route),
		prototest.VirtualHost("longer-prefix", []string{"api.v2.*"}, route),
		prototest.VirtualHost("star", []string{"*"}, route),
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
		prototest.Named("header", prototest.ToCluster(prototest.PrefixMatch("/", prototest.ExactHeader("end-user", "jason")), "b")),
		prototest.Named("present", prototest.ToCluster(prototest.PrefixMatch("/", present), "b")),
		exactPath,
		prototest.Named("prefix", prototest.ToCluster(prototest.PrefixMatch("/api"), "b")),
		prototest.Named("default", prototest.ToCluster(prototest.PrefixMatch("/"), "a")),
	}
	rt, fe := config.BuildRouteTable(prototest.RouteConfig("r", prototest.VirtualHost("v", []string{"*"}, routes...)), config.NewClusterRefs(clusters), false)
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

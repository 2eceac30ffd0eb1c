package config_test

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestBuildRouteTableErrors(t *testing.T) {
	clusters := map[string]*upstream.Cluster{"a": {Name: "a"}}
	overflow := prototest.ToWeighted(prototest.PrefixMatch("/"), map[string]uint32{"a": math.MaxUint32, "b": 1})
	hedge := prototest.ToCluster(prototest.PrefixMatch("/"), "a")
	hedge.GetRoute().IdleTimeout = durationpb.New(time.Second)
	tests := []struct {
		name    string
		rc      *routev3.RouteConfiguration
		wantErr string
	}{
		{"duplicate domain", prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}), prototest.VirtualHost("y", []string{"A"})), `virtual_hosts[1].domains[0]: domain "a" is also in virtual host "x"`},
		{"unknown cluster with validate_clusters", validated(prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, prototest.ToCluster(prototest.PrefixMatch("/"), "nope")))), `virtual_hosts[0].routes[0].route.cluster: unknown cluster "nope"`},
		{"weighted unknown cluster with validate_clusters", validated(prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, prototest.ToWeighted(prototest.PrefixMatch("/"), map[string]uint32{"a": 50, "b": 50})))), `weighted_clusters.clusters[1].name: unknown cluster "b"`},
		{"empty cluster name", prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, prototest.ToCluster(prototest.PrefixMatch("/"), ""))), `virtual_hosts[0].routes[0].route.cluster: empty cluster name`},
		{"weights overflow", prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, overflow)), `weighted_clusters: the weights sum to more than 4294967295`},
		{"route idle timeout", prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, hedge)), `routes[0].route: field idle_timeout: not supported`},
		{"filter action", prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"a"}, &routev3.Route{Match: prototest.PrefixMatch("/"), Action: &routev3.Route_FilterAction{FilterAction: &routev3.FilterAction{}}})), `unknown route action`},
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
// unless clusters are validated (validate_clusters, or an prototest.Inline
// route_config where Envoy defaults it to true).
func TestUnknownClusterWarms(t *testing.T) {
	rc := func() *routev3.RouteConfiguration {
		return prototest.RouteConfig("r", prototest.VirtualHost("x", []string{"*"},
			prototest.ToWeighted(prototest.PrefixMatch("/"), map[string]uint32{"a": 50, "later": 50})))
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

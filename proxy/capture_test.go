package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// passthroughCluster is Istio's PassthroughCluster: ORIGINAL_DST,
// CLUSTER_PROVIDED.
func passthroughCluster(mutate ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 "PassthroughCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(time.Second),
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

// TestOriginalDstRules checks what the proxy accepts of ORIGINAL_DST
// clusters and of use_original_dst / bind_to_port listeners against
// Envoy's rules (docs/xds-conventions.md).
func TestOriginalDstRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster *clusterv3.Cluster
		nack    string
	}{
		{name: "passthrough", cluster: passthroughCluster()},
		{name: "empty original_dst_lb_config", cluster: passthroughCluster(func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{}}
		})},
		{name: "use_http_header", cluster: passthroughCluster(func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{UseHttpHeader: true}}
		}), nack: "original_dst_lb_config"},
		{name: "round robin", cluster: passthroughCluster(func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}), nack: "must use CLUSTER_PROVIDED"},
		{name: "load assignment", cluster: passthroughCluster(func(c *clusterv3.Cluster) {
			c.LoadAssignment = cla(t, "PassthroughCluster")
		}), nack: "no load assignment"},
		{name: "CLUSTER_PROVIDED on STATIC", cluster: func() *clusterv3.Cluster {
			c := inlineCluster(t, "s", clusterv3.Cluster_STATIC)
			c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			return c
		}(), nack: "only valid for an ORIGINAL_DST cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cluster.ValidateAll(); err != nil {
				t.Fatalf("ValidateAll: %v", err)
			}
			_, _, err := config.BuildCluster(tc.cluster, nil)
			switch {
			case tc.nack == "" && err != nil:
				t.Fatalf("NACK %v; want accepted", err)
			case tc.nack != "" && (err == nil || !strings.Contains(err.Error(), tc.nack)):
				t.Fatalf("build error %v; want a NACK containing %q", err, tc.nack)
			}
		})
	}
}

// TestPassthroughWithoutRedirect: a connection that iptables did not
// redirect has no original destination, so a route to an ORIGINAL_DST
// cluster answers 503 UH instead of looping back into the proxy, and a
// bind_to_port: false listener binds nothing. Redirected connections are
// exercised in e2e/capture_test.go (network namespaces, real iptables).
func TestPassthroughWithoutRedirect(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	out := hcmListener(t, "outbound", r.out, "outbound")
	out.UseOriginalDst = wrapperspb.Bool(true)
	unbound := freeAddr(t)
	virtual := hcmListener(t, "0.0.0.0_9080", unbound, "outbound")
	virtual.BindToPort = wrapperspb.Bool(false)
	for _, m := range []types.Resource{out, virtual} {
		if err := m.(*listenerv3.Listener).ValidateAll(); err != nil {
			t.Fatal(err)
		}
	}
	r.push(out, virtual, passthroughCluster(),
		routeConfig("outbound", vhost("allow_any", []string{"*"}, toCluster(prefixMatch("/"), "PassthroughCluster"))))

	resp, body := r.get("GET", "unknown.example.com", "/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no healthy upstream") {
		t.Errorf("status %d %q; want 503 no healthy upstream", resp.StatusCode, body)
	}
	if got := r.metricLines("istio_requests_total", `response_flags="UH"`); len(got) == 0 {
		t.Errorf("no istio_requests_total with response_flags UH in\n%s", r.metrics())
	}
	if c, err := net.DialTimeout("tcp", unbound, time.Second); err == nil {
		c.Close()
		t.Errorf("dialling %s: a bind_to_port: false listener accepts connections", unbound)
	}
	for _, a := range r.proxy.listeners.addrs() {
		if a == unbound {
			t.Errorf("bound addresses %v include the bind_to_port: false listener", r.proxy.listeners.addrs())
		}
	}
}

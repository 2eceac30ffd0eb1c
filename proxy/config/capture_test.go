package config_test

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
)

// TestOriginalDstRules checks what the proxy accepts of ORIGINAL_DST
// clusters and of use_original_dst / bind_to_port listeners against
// Envoy's rules (docs/xds-conventions.md).
func TestOriginalDstRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster *clusterv3.Cluster
		nack    string
	}{
		{name: "passthrough", cluster: prototest.PassthroughCluster()},
		{name: "empty original_dst_lb_config", cluster: prototest.PassthroughCluster(func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{}}
		})},
		{name: "use_http_header", cluster: prototest.PassthroughCluster(func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{UseHttpHeader: true}}
		}), nack: "original_dst_lb_config"},
		{name: "round robin", cluster: prototest.PassthroughCluster(func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}), nack: "must use CLUSTER_PROVIDED"},
		{name: "load assignment", cluster: prototest.PassthroughCluster(func(c *clusterv3.Cluster) {
			c.LoadAssignment = prototest.CLA(t, "PassthroughCluster")
		}), nack: "no load assignment"},
		{name: "CLUSTER_PROVIDED on STATIC", cluster: func() *clusterv3.Cluster {
			c := prototest.InlineCluster(t, "s", clusterv3.Cluster_STATIC)
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

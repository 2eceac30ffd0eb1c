package compiler

import (
	"math"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	networking "istio.io/api/networking/v1"
)

// TestClusterCircuitBreakers: every cluster carries Istio's explicit
// "unlimited" thresholds unless a connection pool lowers one, so neither
// the bundled proxy nor Envoy nor grpc-go applies its own default limits
// (1024 connections, pending and active requests, 3 retries).
func TestClusterCircuitBreakers(t *testing.T) {
	const unlimited = math.MaxUint32
	type limits struct{ conns, pending, requests, retries uint32 }
	s := func(tp *networking.TrafficPolicy) *service {
		return &service{fqdn: "a.default.svc.cluster.local", name: "a", namespace: "default", local: true, policy: tp}
	}
	tests := []struct {
		name    string
		cluster func(t *testing.T) *clusterv3.Cluster
		want    limits
	}{
		{"outbound without DestinationRule", func(t *testing.T) *clusterv3.Cluster {
			return mustOutbound(t, s(nil), servicePort{number: 80, protocol: protoHTTP})
		}, limits{unlimited, unlimited, unlimited, unlimited}},
		{"TCP port without connection pool", func(t *testing.T) *clusterv3.Cluster {
			return mustOutbound(t, s(&networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{
				LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM},
			}}), servicePort{number: 5432, protocol: protoTCP})
		}, limits{unlimited, unlimited, unlimited, unlimited}},
		{"connection pool lowers what it sets", func(t *testing.T) *clusterv3.Cluster {
			return mustOutbound(t, s(&networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{
				Tcp:  &networking.ConnectionPoolSettings_TCPSettings{MaxConnections: 10},
				Http: &networking.ConnectionPoolSettings_HTTPSettings{MaxRetries: 2},
			}}), servicePort{number: 80, protocol: protoHTTP})
		}, limits{10, unlimited, unlimited, 2}},
		{"inbound", func(*testing.T) *clusterv3.Cluster {
			return inboundCluster("inbound|8080||", "127.0.0.1", 8080)
		}, limits{unlimited, unlimited, unlimited, unlimited}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ths := tt.cluster(t).GetCircuitBreakers().GetThresholds()
			if len(ths) != 1 {
				t.Fatalf("circuit_breakers.thresholds = %v; want one DEFAULT entry", ths)
			}
			th := ths[0]
			got := limits{th.GetMaxConnections().GetValue(), th.GetMaxPendingRequests().GetValue(), th.GetMaxRequests().GetValue(), th.GetMaxRetries().GetValue()}
			if got != tt.want || !th.GetTrackRemaining() {
				t.Errorf("thresholds %+v (track_remaining %t); want %+v and track_remaining", got, th.GetTrackRemaining(), tt.want)
			}
		})
	}
}

func mustOutbound(t *testing.T, s *service, pt servicePort) *clusterv3.Cluster {
	t.Helper()
	c, _, err := outboundCluster(s, pt, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

package compiler

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"
)

// This file applies DestinationRule traffic policies to clusters as
// Istio's cluster builder does (pilot/pkg/networking/core/cluster*.go):
// load balancer, connection pool (circuit breakers and HTTP protocol
// options) and outlier detection, with port-level settings and subset
// overrides merged as Istio's MergeTrafficPolicy merges them.

// mergeTrafficPolicy returns the policy that applies on port: override's
// connection pool, load balancer, outlier detection and tls over
// original's, then override's port-level settings for port, which replace
// all four (port-level settings do not inherit; unset parts fall back to
// defaults).
func mergeTrafficPolicy(original, override *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	if override == nil {
		return original
	}
	out := &networking.TrafficPolicy{}
	if original != nil {
		out.ConnectionPool, out.LoadBalancer, out.OutlierDetection = original.GetConnectionPool(), original.GetLoadBalancer(), original.GetOutlierDetection()
		out.Tls = original.GetTls()
	}
	if override.GetConnectionPool() != nil {
		out.ConnectionPool = override.GetConnectionPool()
	}
	if override.GetLoadBalancer() != nil {
		out.LoadBalancer = override.GetLoadBalancer()
	}
	if override.GetOutlierDetection() != nil {
		out.OutlierDetection = override.GetOutlierDetection()
	}
	if override.GetTls() != nil {
		out.Tls = override.GetTls()
	}
	for _, pl := range override.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			out.ConnectionPool, out.LoadBalancer, out.OutlierDetection = pl.GetConnectionPool(), pl.GetLoadBalancer(), pl.GetOutlierDetection()
			out.Tls = pl.GetTls()
			break
		}
	}
	return out
}

// clusterPolicy is the traffic policy of a service port's cluster (subset
// "" for the whole service).
func clusterPolicy(s *service, subsetName string, port uint32) *networking.TrafficPolicy {
	tp := mergeTrafficPolicy(nil, s.policy, port)
	for _, ss := range s.subsets {
		if ss.name == subsetName && subsetName != "" {
			tp = mergeTrafficPolicy(tp, ss.policy, port)
		}
	}
	return tp
}

// applyTrafficPolicy sets c's load balancer, circuit breakers, protocol
// options and outlier detection from tp. opts are the cluster's HTTP
// protocol options so far (nil when none); the result is nil when none
// are needed.
func applyTrafficPolicy(c *clusterv3.Cluster, tp *networking.TrafficPolicy, pt servicePort, opts *upstreamhttpv3.HttpProtocolOptions) *upstreamhttpv3.HttpProtocolOptions {
	applyLoadBalancer(c, tp.GetLoadBalancer())
	opts = applyConnectionPool(c, tp.GetConnectionPool(), pt, opts)
	applyOutlierDetection(c, tp.GetOutlierDetection())
	return opts
}

// applyLoadBalancer sets the cluster's lb_policy: ROUND_ROBIN (gitmesh's
// default), LEAST_REQUEST (also LEAST_CONN), RANDOM, or RING_HASH for a
// consistent hash (minimum ring size 1024 unless set, as Istio).
func applyLoadBalancer(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_LEAST_CONN, networking.LoadBalancerSettings_LEAST_REQUEST:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case networking.LoadBalancerSettings_RANDOM:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	}
	ch := lb.GetConsistentHash()
	if ch == nil {
		return
	}
	size := uint64(1024)
	switch {
	case ch.GetRingHash() != nil && ch.GetRingHash().GetMinimumRingSize() != 0:
		size = ch.GetRingHash().GetMinimumRingSize()
	case ch.GetRingHash() == nil && ch.GetMinimumRingSize() != 0:
		size = ch.GetMinimumRingSize()
	}
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		MinimumRingSize: wrapperspb.UInt64(size),
	}}
}

// defaultCircuitBreakers returns Istio's circuit breakers for a cluster
// without a connection pool (pilot's getDefaultCircuitBreakerThresholds):
// every threshold at MaxUint32 and track_remaining. Without them Envoy,
// the bundled proxy and grpc-go apply their own limits (1024 connections,
// pending and active requests, 3 concurrent retries), a hidden cap that
// turns a burst or pod churn into 503 UO.
func defaultCircuitBreakers() *clusterv3.CircuitBreakers {
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}}}
}

// applyConnectionPool sets circuit breakers, Istio's unlimited defaults
// (defaultCircuitBreakers) with the pool's limits over them, the connect
// timeout, and for HTTP ports idle timeout and max requests per
// connection in the HTTP protocol options. Without a connection pool the
// cluster gets the defaults alone, as in Istio.
func applyConnectionPool(c *clusterv3.Cluster, cp *networking.ConnectionPoolSettings, pt servicePort, opts *upstreamhttpv3.HttpProtocolOptions) *upstreamhttpv3.HttpProtocolOptions {
	c.CircuitBreakers = defaultCircuitBreakers()
	if cp == nil {
		return opts
	}
	th := c.CircuitBreakers.Thresholds[0]
	h := cp.GetHttp()
	if v := h.GetHttp2MaxRequests(); v > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(v))
	}
	if v := h.GetHttp1MaxPendingRequests(); v > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(v))
	}
	if v := h.GetMaxRetries(); v > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(v))
	}
	if t := cp.GetTcp(); t != nil {
		if t.GetConnectTimeout() != nil {
			c.ConnectTimeout = t.GetConnectTimeout()
		}
		if v := t.GetMaxConnections(); v > 0 {
			th.MaxConnections = wrapperspb.UInt32(uint32(v))
		}
	}
	if pt.protocol == protoTCP || (h.GetIdleTimeout() == nil && h.GetMaxRequestsPerConnection() <= 0) {
		return opts
	}
	if opts == nil {
		opts = &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
						HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
					},
				},
			},
		}
	}
	common := &corev3.HttpProtocolOptions{}
	if h.GetIdleTimeout() != nil {
		common.IdleTimeout = h.GetIdleTimeout()
	}
	if v := h.GetMaxRequestsPerConnection(); v > 0 {
		common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(v))
	}
	opts.CommonHttpProtocolOptions = common
	return opts
}

// applyOutlierDetection sets outlier detection as Istio does: success-rate
// ejection off, consecutive 5xx and gateway errors enforced at 100% when
// set above 0, interval, base ejection time, max ejection percent, and
// the healthy panic threshold from minHealthPercent (0, off, by default).
func applyOutlierDetection(c *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		v := e.GetValue()
		out.Consecutive_5Xx = wrapperspb.UInt32(v)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(enforcing(v))
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		v := e.GetValue()
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v)
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcing(v))
	}
	if od.GetInterval() != nil {
		out.Interval = od.GetInterval()
	}
	if od.GetBaseEjectionTime() != nil {
		out.BaseEjectionTime = od.GetBaseEjectionTime()
	}
	if v := od.GetMaxEjectionPercent(); v > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(v))
	}
	c.OutlierDetection = out
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.GetMinHealthPercent())}}
}

// enforcing is 100 when n errors are set to eject (n > 0), else 0.
func enforcing(n uint32) uint32 {
	if n > 0 {
		return 100
	}
	return 0
}

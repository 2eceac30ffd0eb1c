package config

import (
	"fmt"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

func buildBreakers(cb *clusterv3.CircuitBreakers) (upstream.BreakerLimits, *fieldError) {
	l := upstream.DefaultBreakerLimits
	if cb == nil {
		return l, nil
	}
	if err := checkFields(cb, "thresholds"); err != nil {
		return l, fieldErr("circuit_breakers", "%w", err)
	}
	for i, t := range cb.GetThresholds() {
		field := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)

		if err := checkFields(t, "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "track_remaining"); err != nil {
			return l, fieldErr(field, "%w", err)
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		set := func(dst *uint32, v interface{ GetValue() uint32 }, isNil bool) {
			if !isNil {
				*dst = v.GetValue()
			}
		}
		set(&l.MaxConnections, t.GetMaxConnections(), t.GetMaxConnections() == nil)
		set(&l.MaxPending, t.GetMaxPendingRequests(), t.GetMaxPendingRequests() == nil)
		set(&l.MaxRequests, t.GetMaxRequests(), t.GetMaxRequests() == nil)
		set(&l.MaxRetries, t.GetMaxRetries(), t.GetMaxRetries() == nil)
	}
	return l, nil
}

package config

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"time"
)

func percentFraction(v uint32) upstream.Fraction { return upstream.Fraction(min(v, 100) * 10_000) }

// buildOutlier reads a cluster's outlier_detection with Envoy's defaults.
// Success-rate and failure-percentage detection are not implemented: their
// enforcing_* fields must be 0 (as Istio emits them).
func buildOutlier(od *clusterv3.OutlierDetection) (*upstream.OutlierConfig, *fieldError) {
	if od == nil {
		return nil, nil
	}
	if err := checkFields(od, "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
		"enforcing_consecutive_5xx", "enforcing_success_rate", "consecutive_gateway_failure",
		"enforcing_consecutive_gateway_failure", "split_external_local_origin_errors", "consecutive_local_origin_failure",
		"enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate", "enforcing_failure_percentage",
		"enforcing_failure_percentage_local_origin", "max_ejection_time", "always_eject_one_host"); err != nil {
		return nil, fieldErr("outlier_detection", "%w", err)
	}
	u32 := func(v interface{ GetValue() uint32 }, isNil bool, def uint32) uint32 {
		if isNil {
			return def
		}
		return v.GetValue()
	}
	dur := func(d interface{ AsDuration() time.Duration }, isNil bool, def time.Duration) time.Duration {
		if isNil {
			return def
		}
		return d.AsDuration()
	}
	o := &upstream.OutlierConfig{
		Consecutive5xx:     u32(od.GetConsecutive_5Xx(), od.GetConsecutive_5Xx() == nil, 5),
		Enforce5xx:         percentFraction(u32(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() == nil, 100)),
		ConsecutiveGateway: u32(od.GetConsecutiveGatewayFailure(), od.GetConsecutiveGatewayFailure() == nil, 5),
		EnforceGateway:     percentFraction(u32(od.GetEnforcingConsecutiveGatewayFailure(), od.GetEnforcingConsecutiveGatewayFailure() == nil, 0)),
		SplitLocal:         od.GetSplitExternalLocalOriginErrors(),
		ConsecutiveLocal:   u32(od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveLocalOriginFailure() == nil, 5),
		EnforceLocal:       percentFraction(u32(od.GetEnforcingConsecutiveLocalOriginFailure(), od.GetEnforcingConsecutiveLocalOriginFailure() == nil, 100)),
		Interval:           dur(od.GetInterval(), od.GetInterval() == nil, 10*time.Second),
		BaseEjection:       dur(od.GetBaseEjectionTime(), od.GetBaseEjectionTime() == nil, 30*time.Second),
		MaxEjection:        dur(od.GetMaxEjectionTime(), od.GetMaxEjectionTime() == nil, 300*time.Second),
		MaxEjectionPercent: min(u32(od.GetMaxEjectionPercent(), od.GetMaxEjectionPercent() == nil, 10), 100),
		AlwaysEjectOneHost: od.GetAlwaysEjectOneHost().GetValue(),
	}
	for name, v := range map[string]interface{ GetValue() uint32 }{
		"enforcing_success_rate":                    od.GetEnforcingSuccessRate(),
		"enforcing_local_origin_success_rate":       od.GetEnforcingLocalOriginSuccessRate(),
		"enforcing_failure_percentage":              od.GetEnforcingFailurePercentage(),
		"enforcing_failure_percentage_local_origin": od.GetEnforcingFailurePercentageLocalOrigin(),
	} {
		if v.GetValue() != 0 {
			return nil, fieldErr("outlier_detection."+name, "%d: success-rate and failure-percentage ejection: %w (set 0)", v.GetValue(), ErrUnsupported)
		}
	}
	if o.Interval <= 0 {
		return nil, fieldErr("outlier_detection.interval", "must be positive")
	}
	if o.BaseEjection <= 0 {
		return nil, fieldErr("outlier_detection.base_ejection_time", "must be positive")
	}
	o.MaxEjection = max(o.MaxEjection, o.BaseEjection)
	return o, nil
}

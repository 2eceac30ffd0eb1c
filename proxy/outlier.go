package proxy

import (
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// hostState is one upstream host's live counters. It outlives
// configurations: the applier hands the same state to the host's endpoint
// in every configuration that keeps the host (see hostRegistry).
type hostState struct {
	// active counts in-flight requests (LEAST_REQUEST).
	active atomic.Int64
	// consecutive errors for outlier detection.
	consecutive5xx     atomic.Uint32
	consecutiveGateway atomic.Uint32
	consecutiveLocal   atomic.Uint32
	// ejectedUntil is when an ejection ends (unix nanoseconds), 0 when the
	// host is not ejected.
	ejectedUntil atomic.Int64
	// ejections is the ejection multiplier; lastUneject (unix nanoseconds)
	// lets it decay by one per healthy interval, as in Envoy.
	ejections   atomic.Uint32
	lastUneject atomic.Int64
}

// ejected reports whether the host is ejected at now (unix nanoseconds).
// An ejection that has run its course ends here, lazily: the host takes
// traffic again from the first pick after its ejection time.
func (h *hostState) ejected(now int64, cs *clusterState) bool {
	until := h.ejectedUntil.Load()
	if until == 0 {
		return false
	}
	if now < until {
		return true
	}
	if h.ejectedUntil.CompareAndSwap(until, 0) {
		h.lastUneject.Store(now)
		h.consecutive5xx.Store(0)
		h.consecutiveGateway.Store(0)
		h.consecutiveLocal.Store(0)
		if cs != nil {
			cs.ejected.Add(-1)
		}
	}
	return false
}

// outlierConfig is a built OutlierDetection (consecutive-error detection).
type outlierConfig struct {
	consecutive5xx     uint32
	enforce5xx         fraction
	consecutiveGateway uint32
	enforceGateway     fraction
	splitLocal         bool
	consecutiveLocal   uint32
	enforceLocal       fraction
	interval           time.Duration
	baseEjection       time.Duration
	maxEjection        time.Duration
	maxEjectionPercent uint32
	alwaysEjectOneHost bool
}

func percentFraction(v uint32) fraction { return fraction(min(v, 100) * 10_000) }

// buildOutlier reads a cluster's outlier_detection with Envoy's defaults.
// Success-rate and failure-percentage detection are not implemented: their
// enforcing_* fields must be 0 (as Istio emits them).
func buildOutlier(od *clusterv3.OutlierDetection) (*outlierConfig, *fieldError) {
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
	o := &outlierConfig{
		consecutive5xx:     u32(od.GetConsecutive_5Xx(), od.GetConsecutive_5Xx() == nil, 5),
		enforce5xx:         percentFraction(u32(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() == nil, 100)),
		consecutiveGateway: u32(od.GetConsecutiveGatewayFailure(), od.GetConsecutiveGatewayFailure() == nil, 5),
		enforceGateway:     percentFraction(u32(od.GetEnforcingConsecutiveGatewayFailure(), od.GetEnforcingConsecutiveGatewayFailure() == nil, 0)),
		splitLocal:         od.GetSplitExternalLocalOriginErrors(),
		consecutiveLocal:   u32(od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveLocalOriginFailure() == nil, 5),
		enforceLocal:       percentFraction(u32(od.GetEnforcingConsecutiveLocalOriginFailure(), od.GetEnforcingConsecutiveLocalOriginFailure() == nil, 100)),
		interval:           dur(od.GetInterval(), od.GetInterval() == nil, 10*time.Second),
		baseEjection:       dur(od.GetBaseEjectionTime(), od.GetBaseEjectionTime() == nil, 30*time.Second),
		maxEjection:        dur(od.GetMaxEjectionTime(), od.GetMaxEjectionTime() == nil, 300*time.Second),
		maxEjectionPercent: min(u32(od.GetMaxEjectionPercent(), od.GetMaxEjectionPercent() == nil, 10), 100),
		alwaysEjectOneHost: od.GetAlwaysEjectOneHost().GetValue(),
	}
	for name, v := range map[string]interface{ GetValue() uint32 }{
		"enforcing_success_rate":                    od.GetEnforcingSuccessRate(),
		"enforcing_local_origin_success_rate":       od.GetEnforcingLocalOriginSuccessRate(),
		"enforcing_failure_percentage":              od.GetEnforcingFailurePercentage(),
		"enforcing_failure_percentage_local_origin": od.GetEnforcingFailurePercentageLocalOrigin(),
	} {
		if v.GetValue() != 0 {
			return nil, fieldErr("outlier_detection."+name, "%d: success-rate and failure-percentage ejection: %w (set 0)", v.GetValue(), errUnsupported)
		}
	}
	if o.interval <= 0 {
		return nil, fieldErr("outlier_detection.interval", "must be positive")
	}
	if o.baseEjection <= 0 {
		return nil, fieldErr("outlier_detection.base_ejection_time", "must be positive")
	}
	o.maxEjection = max(o.maxEjection, o.baseEjection)
	return o, nil
}

// outcome classifies one upstream attempt for outlier detection.
type outcome int

const (
	outcomeSuccess      outcome = iota
	outcomeStatus5xx            // a 5xx other than 502/503/504
	outcomeGateway              // 502, 503 or 504
	outcomeLocalFailure         // connect failure, reset or timeout
)

func statusOutcome(code int) outcome {
	switch {
	case code == 502 || code == 503 || code == 504:
		return outcomeGateway
	case code >= 500:
		return outcomeStatus5xx
	}
	return outcomeSuccess
}

// report feeds one attempt's outcome to the cluster's outlier detector and
// ejects the host when a consecutive-error threshold is reached.
func (c *cluster) report(e *endpoint, o outcome) {
	od := c.outlier
	if od == nil || e == nil {
		return
	}
	h := e.state
	if o == outcomeSuccess {
		h.consecutive5xx.Store(0)
		h.consecutiveGateway.Store(0)
		h.consecutiveLocal.Store(0)
		return
	}
	if o == outcomeLocalFailure && od.splitLocal {
		if h.consecutiveLocal.Add(1) == od.consecutiveLocal && od.enforceLocal.roll() {
			c.eject(e)
		}
		return
	}
	// Without the split, local failures count as 503s (gateway errors).
	if o == outcomeLocalFailure {
		o = outcomeGateway
	}
	n5 := h.consecutive5xx.Add(1)
	var ng uint32
	if o == outcomeGateway {
		ng = h.consecutiveGateway.Add(1)
	} else {
		h.consecutiveGateway.Store(0)
	}
	switch {
	case od.consecutive5xx > 0 && n5 == od.consecutive5xx && od.enforce5xx.roll():
		c.eject(e)
	case od.consecutiveGateway > 0 && ng == od.consecutiveGateway && od.enforceGateway.roll():
		c.eject(e)
	}
}

// eject takes the host out of balancing for base_ejection_time times its
// ejection multiplier (capped by max_ejection_time), unless that would
// eject more than max_ejection_percent of the cluster.
func (c *cluster) eject(e *endpoint) {
	od, cs, h := c.outlier, c.state, e.state
	if cs == nil {
		return
	}
	now := time.Now()
	if h.ejected(now.UnixNano(), cs) {
		return
	}
	total := len(c.currentEndpoints().endpoints)
	if total == 0 {
		return
	}
	active := cs.ejected.Load()
	percent := 100 * float64(active+1) / float64(total)
	if percent > float64(od.maxEjectionPercent) && !(od.alwaysEjectOneHost && active == 0) {
		return
	}
	mult := h.ejections.Load()
	if last := h.lastUneject.Load(); last != 0 {
		healthy := uint32(now.Sub(time.Unix(0, last)) / od.interval)
		mult -= min(mult, healthy)
	}
	mult++
	h.ejections.Store(mult)
	d := min(od.baseEjection*time.Duration(mult), od.maxEjection)
	if h.ejectedUntil.CompareAndSwap(0, now.Add(d).UnixNano()) {
		cs.ejected.Add(1)
		if c.metrics != nil {
			c.metrics.outlierEjections.WithLabelValues(c.name).Inc()
		}
	}
}

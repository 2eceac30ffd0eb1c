package upstream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// HostState is one upstream host's live counters. It outlives
// configurations: the applier hands the same state to the host's endpoint
// in every configuration that keeps the host (see hostRegistry).
type HostState struct {
	// Active counts in-flight requests (LEAST_REQUEST).
	Active atomic.Int64
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
func (h *HostState) ejected(now int64, cs *ClusterState) bool {
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

// OutlierConfig is a built OutlierDetection (consecutive-error detection).
type OutlierConfig struct {
	// Consecutive5xx, ConsecutiveGateway and ConsecutiveLocal are the
	// consecutive errors that eject a host, each enforced on a share of
	// ejections (Enforce*); SplitLocal is split_external_local_origin_errors.
	Consecutive5xx     uint32
	Enforce5xx         Fraction
	ConsecutiveGateway uint32
	EnforceGateway     Fraction
	SplitLocal         bool
	ConsecutiveLocal   uint32
	EnforceLocal       Fraction
	// Interval is how often ejections are reconsidered; BaseEjection,
	// MaxEjection and MaxEjectionPercent bound them; AlwaysEjectOneHost
	// ignores the percentage for the first host.
	Interval           time.Duration
	BaseEjection       time.Duration
	MaxEjection        time.Duration
	MaxEjectionPercent uint32
	AlwaysEjectOneHost bool
}

// Outcome classifies one upstream attempt for outlier detection.
type Outcome int

const (
	// The outcomes: a response below 500, a 5xx other than the gateway
	// errors, 502/503/504, and a local (connection) failure.
	OutcomeSuccess      Outcome = iota
	outcomeStatus5xx            // a 5xx other than 502/503/504
	outcomeGateway              // 502, 503 or 504
	OutcomeLocalFailure         // connect failure, reset or timeout
)

// StatusOutcome classifies a response status code.
func StatusOutcome(code int) Outcome {
	switch {
	case code == 502 || code == 503 || code == 504:
		return outcomeGateway
	case code >= 500:
		return outcomeStatus5xx
	}
	return OutcomeSuccess
}

// Report feeds one attempt's outcome to the cluster's outlier detector and
// ejects the host when a consecutive-error threshold is reached.
func (c *Cluster) Report(e *Endpoint, o Outcome) {
	od := c.Outlier
	if od == nil || e == nil {
		return
	}
	h := e.State
	if o == OutcomeSuccess {
		h.consecutive5xx.Store(0)
		h.consecutiveGateway.Store(0)
		h.consecutiveLocal.Store(0)
		return
	}
	if o == OutcomeLocalFailure && od.SplitLocal {
		if h.consecutiveLocal.Add(1) == od.ConsecutiveLocal && od.EnforceLocal.Roll() {
			c.eject(e)
		}
		return
	}
	// Without the split, local failures count as 503s (gateway errors).
	if o == OutcomeLocalFailure {
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
	case od.Consecutive5xx > 0 && n5 == od.Consecutive5xx && od.Enforce5xx.Roll():
		c.eject(e)
	case od.ConsecutiveGateway > 0 && ng == od.ConsecutiveGateway && od.EnforceGateway.Roll():
		c.eject(e)
	}
}

// eject takes the host out of balancing for base_ejection_time times its
// ejection multiplier (capped by max_ejection_time), unless that would
// eject more than max_ejection_percent of the cluster.
func (c *Cluster) eject(e *Endpoint) {
	od, cs, h := c.Outlier, c.State, e.State
	if cs == nil {
		return
	}
	now := time.Now()
	if h.ejected(now.UnixNano(), cs) {
		return
	}
	total := len(c.currentEndpoints().Endpoints)
	if total == 0 {
		return
	}
	active := cs.ejected.Load()
	percent := 100 * float64(active+1) / float64(total)
	if percent > float64(od.MaxEjectionPercent) && !(od.AlwaysEjectOneHost && active == 0) {
		return
	}
	mult := h.ejections.Load()
	if last := h.lastUneject.Load(); last != 0 {
		healthy := uint32(now.Sub(time.Unix(0, last)) / od.Interval)
		mult -= min(mult, healthy)
	}
	mult++
	h.ejections.Store(mult)
	d := min(od.BaseEjection*time.Duration(mult), od.MaxEjection)
	if h.ejectedUntil.CompareAndSwap(0, now.Add(d).UnixNano()) {
		cs.ejected.Add(1)
		if c.Metrics != nil {
			c.Metrics.OutlierEjections.WithLabelValues(c.Name).Inc()
		}
	}
}

// Fraction is a probability in parts per million.
type Fraction uint32

// Million is a Fraction of 1 (100%).
const Million = 1_000_000

// Roll reports whether an event with probability f happens.
func (f Fraction) Roll() bool {
	switch {
	case f == 0:
		return false
	case f >= Million:
		return true
	}
	return rand.Uint32N(Million) < uint32(f)
}

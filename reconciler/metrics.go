package reconciler

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitmesh/gitmesh/api/admin"
)

// metrics are the reconciler's Prometheus collectors (no global registry).
type metrics struct {
	reconciles      *prometheus.CounterVec
	duration        prometheus.Histogram
	ready           prometheus.Gauge
	rollouts        *prometheus.CounterVec
	phase           *prometheus.GaugeVec
	wave            prometheus.Gauge
	canary          *prometheus.GaugeVec
	waves           prometheus.Gauge
	checks          *prometheus.CounterVec
	rollbackSeconds prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_reconcile_total",
			Help: "Reconcile passes by result (Succeeded or the Ready reason that failed them).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gitmesh_reconcile_duration_seconds",
			Help:    "Time of one reconcile pass (fetch, build, validate, compile, apply).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitmesh_ready",
			Help: "1 when the last reconcile pass succeeded, else 0.",
		}),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_rollouts_total",
			Help: "History records by outcome (Promoted, RolledBack, Failed, Aborted, Superseded, ManualRollback, Refused), as gitmesh history shows them.",
		}, []string{"outcome"}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitmesh_rollout_phase",
			Help: "1 for the phase the current (or last) rollout is in.",
		}, []string{"phase"}),
		wave: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitmesh_rollout_wave",
			Help: "The wave (1-based) the current (or last) rollout is in; 0 before the first rollout.",
		}),
		waves: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitmesh_rollout_waves",
			Help: "How many waves the current (or last) rollout has.",
		}),
		canary: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitmesh_rollout_canary_proxy",
			Help: "1 for each proxy (node id) that runs the in-flight rollout's new revision; no series while no rollout is in flight.",
		}, []string{"node"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_analysis_checks_total",
			Help: "Analysis checks by result (pass, fail, inconclusive).",
		}, []string{"result"}),
		rollbackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gitmesh_rollback_duration_seconds",
			Help:    "Time from a rollback decision until every rolled-back proxy ACKed the last good version.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
	}
	// Known label values start at 0, so that rates and dashboards show 0
	// rather than no data before the first event.
	for _, o := range []admin.Phase{admin.PhasePromoted, admin.PhaseRolledBack, admin.PhaseFailed, admin.PhaseSuperseded} {
		m.rollouts.WithLabelValues(string(o))
	}
	m.rollouts.WithLabelValues("ManualRollback")
	for _, r := range []admin.CheckResult{admin.Pass, admin.Fail, admin.Inconclusive} {
		m.checks.WithLabelValues(string(r))
	}
	return m
}

// setRollout records ro's phase and wave.
func (m *metrics) setRollout(ro *admin.Rollout) {
	m.setPhase(ro.Phase)
	m.wave.Set(float64(ro.Wave + 1))
	m.waves.Set(float64(len(ro.Waves)))
	m.canary.Reset()
	if !ro.Phase.Done() {
		for _, id := range ro.Updated {
			m.canary.WithLabelValues(id).Set(1)
		}
	}
}

// setPhase marks p as the current rollout phase.
func (m *metrics) setPhase(p admin.Phase) {
	for _, q := range admin.Phases() {
		m.phase.WithLabelValues(string(q)).Set(boolGauge(p == q))
	}
}

func (m *metrics) observe(err error, d time.Duration) {
	result := ReasonSucceeded
	var se *stepError
	if errors.As(err, &se) {
		result = se.reason
	} else if err != nil {
		result = "Failed"
	}
	m.reconciles.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

// Collectors returns the reconciler's metrics for registration.
func (r *Reconciler) Collectors() []prometheus.Collector {
	m := r.metrics
	return []prometheus.Collector{m.reconciles, m.duration, m.ready, m.rollouts, m.phase, m.wave, m.waves, m.canary, m.checks, m.rollbackSeconds}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

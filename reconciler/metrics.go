package reconciler

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the reconciler's Prometheus collectors (no global registry).
type metrics struct {
	reconciles *prometheus.CounterVec
	duration   prometheus.Histogram
	ready      prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
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
	return []prometheus.Collector{r.metrics.reconciles, r.metrics.duration, r.metrics.ready}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

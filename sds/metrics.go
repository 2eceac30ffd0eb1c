package sds

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the Manager's metrics. The gauges are collected from the
// Manager's state at scrape time.
type metrics struct {
	m           *Manager
	issued      prometheus.Counter
	issueErrors prometheus.Counter
	expiry      *prometheus.Desc
	nextExpiry  *prometheus.Desc
	rootExpiry  *prometheus.Desc
	roots       *prometheus.Desc
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(m *Manager) *metrics {
	return &metrics{
		m: m,
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_ca_certificates_issued_total",
			Help: "Workload certificates issued.",
		}),
		issueErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_ca_certificate_issue_errors_total",
			Help: "Workload certificates that could not be issued.",
		}),
		expiry: prometheus.NewDesc("gitmesh_ca_certificate_expiry_timestamp_seconds",
			"When each proxy's workload certificate expires (Unix time).", []string{"node", "spiffe_id"}, nil),
		nextExpiry: prometheus.NewDesc("gitmesh_ca_next_certificate_expiry_timestamp_seconds",
			"The earliest expiry of a workload certificate (Unix time); absent when none was issued.", nil, nil),
		rootExpiry: prometheus.NewDesc("gitmesh_ca_root_expiry_timestamp_seconds",
			"When the signing root expires (Unix time).", nil, nil),
		roots: prometheus.NewDesc("gitmesh_ca_trusted_roots",
			"Roots in the trust bundle (ROOTCA): more than one between a rotation and its prune.", nil, nil),
	}
}

// Collectors returns the Manager's Prometheus collectors, for the caller to
// register (the package uses no global registry):
//
//   - gitmesh_ca_certificates_issued_total and
//     gitmesh_ca_certificate_issue_errors_total;
//   - gitmesh_ca_certificate_expiry_timestamp_seconds{node,spiffe_id};
//   - gitmesh_ca_next_certificate_expiry_timestamp_seconds;
//   - gitmesh_ca_root_expiry_timestamp_seconds and gitmesh_ca_trusted_roots.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.metrics.issued, m.metrics.issueErrors, m.metrics}
}

// Describe implements prometheus.Collector.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- x.expiry
	ch <- x.nextExpiry
	ch <- x.rootExpiry
	ch <- x.roots
}

// Collect implements prometheus.Collector.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	m := x.m
	m.mu.Lock()
	root := m.auth.Root()
	roots := m.auth.Roots()
	var next float64
	for id, nc := range m.nodes {
		at := float64(nc.leaf.NotAfter.Unix())
		ch <- prometheus.MustNewConstMetric(x.expiry, prometheus.GaugeValue, at, id, nc.id.String())
		if next == 0 || at < next {
			next = at
		}
	}
	m.mu.Unlock()
	if next != 0 {
		ch <- prometheus.MustNewConstMetric(x.nextExpiry, prometheus.GaugeValue, next)
	}
	ch <- prometheus.MustNewConstMetric(x.rootExpiry, prometheus.GaugeValue, float64(root.NotAfter.Unix()))
	ch <- prometheus.MustNewConstMetric(x.roots, prometheus.GaugeValue, float64(roots))
}

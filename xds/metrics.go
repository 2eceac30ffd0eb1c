package xds

import (
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// convergenceBuckets are the buckets of gitmesh_xds_proxy_convergence_seconds,
// Istio's pilot_proxy_convergence_time buckets.
var convergenceBuckets = []float64{0.1, 0.5, 1, 3, 5, 10, 20, 30}

// metrics holds the fleet metrics of one Server. It collects the gauges
// itself, from the node table, at scrape time.
type metrics struct {
	s           *Server
	nacks       *prometheus.CounterVec
	acks        *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	convergence prometheus.Histogram
	connected   *prometheus.Desc
	proxies     *prometheus.Desc
	versions    *prometheus.Desc
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s: s,
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_xds_nacks_total",
			Help: "NACKs received from proxies, by resource type.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_xds_acks_total",
			Help: "ACKs received from proxies, by resource type.",
		}, []string{"type"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_xds_pushes_total",
			Help: "xDS responses sent to proxies, by resource type (Istio's pilot_xds_pushes).",
		}, []string{"type"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gitmesh_xds_proxy_convergence_seconds",
			Help:    "Time from a version being assigned to a proxy until the proxy ACKed all of it (Istio's pilot_proxy_convergence_time).",
			Buckets: convergenceBuckets,
		}),
		connected: prometheus.NewDesc("gitmesh_xds_connected_proxies",
			"Proxies with at least one open xDS stream.", nil, nil),
		proxies: prometheus.NewDesc("gitmesh_xds_proxies",
			"Known proxies (connected, or disconnected within the grace period) by sync state.", []string{"state"}, nil),
		versions: prometheus.NewDesc("gitmesh_xds_connected_proxies_by_version",
			"Connected proxies by role, namespace, service and the version label they run (\"none\" while they run no assigned version).",
			[]string{"role", "namespace", "service", "version"}, nil),
	}
	// The counters of the types every sidecar uses start at 0, so that
	// rates show 0 rather than no data before the first event.
	for _, t := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType, resource.SecretType} {
		for _, c := range []*prometheus.CounterVec{m.nacks, m.acks, m.pushes} {
			c.WithLabelValues(typeLabel(t))
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.nacks, m.acks, m.pushes, m.convergence, m}
}

// typeLabel is a type URL without its type.googleapis.com/ prefix.
func typeLabel(typeURL string) string {
	return strings.TrimPrefix(typeURL, resource.APITypePrefix)
}

// nacked counts a NACK of typeURL.
func (m *metrics) nacked(typeURL string) { m.nacks.WithLabelValues(typeLabel(typeURL)).Inc() }

// acked counts an ACK of typeURL.
func (m *metrics) acked(typeURL string) { m.acks.WithLabelValues(typeLabel(typeURL)).Inc() }

// pushed counts a response of typeURL.
func (m *metrics) pushed(typeURL string) { m.pushes.WithLabelValues(typeLabel(typeURL)).Inc() }

// converged observes n's convergence when it has just come to run the
// version assigned to it. s.mu must be held.
func (m *metrics) converged(n *node, now time.Time) {
	if n.assignedAt.IsZero() || n.assigned == "" || n.acked != n.assigned {
		return
	}
	m.convergence.Observe(now.Sub(n.assignedAt).Seconds())
	n.assignedAt = time.Time{}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connected
	ch <- m.proxies
	ch <- m.versions
}

// versionKey is one series of gitmesh_xds_connected_proxies_by_version.
type versionKey struct{ role, namespace, service, version string }

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	connected := 0
	states := map[SyncState]int{StateSynced: 0, StateStale: 0, StateNacked: 0}
	versions := map[versionKey]int{}
	m.s.mu.Lock()
	for _, n := range m.s.nodes {
		states[n.state()]++
		if n.streams == 0 {
			continue
		}
		connected++
		w := n.workload
		role := orNone(w.Role)
		if w.Generator != "" {
			role = w.Generator // a proxyless gRPC client
		}
		k := versionKey{role: role, namespace: orNone(w.Namespace), service: orNone(w.Service), version: orNone(n.acked)}
		versions[k]++
	}
	m.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.connected, prometheus.GaugeValue, float64(connected))
	for st, v := range states {
		ch <- prometheus.MustNewConstMetric(m.proxies, prometheus.GaugeValue, float64(v), string(st))
	}
	for k, v := range versions {
		ch <- prometheus.MustNewConstMetric(m.versions, prometheus.GaugeValue, float64(v), k.role, k.namespace, k.service, k.version)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

package xds

import (
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the fleet metrics of one Server. It collects the gauges
// itself, from the node table, at scrape time.
type metrics struct {
	s         *Server
	nacks     *prometheus.CounterVec
	connected *prometheus.Desc
	proxies   *prometheus.Desc
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(s *Server) *metrics {
	return &metrics{
		s: s,
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_xds_nacks_total",
			Help: "NACKs received from proxies, by resource type.",
		}, []string{"type"}),
		connected: prometheus.NewDesc("gitmesh_xds_connected_proxies",
			"Proxies with at least one open xDS stream.", nil, nil),
		proxies: prometheus.NewDesc("gitmesh_xds_proxies",
			"Known proxies (connected, or disconnected within the grace period) by sync state.", []string{"state"}, nil),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.nacks, m}
}

// nacked counts a NACK of typeURL.
func (m *metrics) nacked(typeURL string) {
	m.nacks.WithLabelValues(strings.TrimPrefix(typeURL, resource.APITypePrefix)).Inc()
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connected
	ch <- m.proxies
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	connected := 0
	states := map[SyncState]int{StateSynced: 0, StateStale: 0, StateNacked: 0}
	m.s.mu.Lock()
	for _, n := range m.s.nodes {
		if n.streams > 0 {
			connected++
		}
		states[n.state()]++
	}
	m.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.connected, prometheus.GaugeValue, float64(connected))
	for st, v := range states {
		ch <- prometheus.MustNewConstMetric(m.proxies, prometheus.GaugeValue, float64(v), string(st))
	}
}

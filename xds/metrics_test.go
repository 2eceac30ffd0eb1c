package xds

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gather returns every sample of the server's collectors, keyed
// `name{label="value",...}`.
func gather(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	s, addr := startServer(t)
	label, snap := sidecar(t, "reviews", 15001, 9080)
	for _, id := range []string{"n1", "waiting"} {
		if err := s.SetSnapshot(t.Context(), id, label, snap); err != nil {
			t.Fatal(err)
		}
	}
	c := connectADS(t, addr, workload("n1").Node())
	c.subscribeSidecar(t, "reviews")
	c.recvAndAck(t, 4)
	waitState(t, s, "n1", StateSynced, label)

	got := gather(t, s)
	for key, want := range map[string]float64{
		"gitmesh_xds_connected_proxies":       1,
		`gitmesh_xds_proxies{state="SYNCED"}`: 1,
		`gitmesh_xds_proxies{state="STALE"}`:  1,
		`gitmesh_xds_proxies{state="NACKED"}`: 0,
		`gitmesh_xds_connected_proxies_by_version{namespace="default",role="sidecar",service="productpage",version="` + label + `"}`: 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v; want %v", key, got[key], want)
		}
	}
	// Every type was sent and ACKed once; n1 converged once ("waiting"
	// never connected).
	for _, key := range []string{"gitmesh_xds_pushes_total", "gitmesh_xds_acks_total"} {
		if n := sumPrefix(got, key+"{"); n < 4 {
			t.Errorf("%s = %v; want at least 4 (one per type)", key, n)
		}
	}
	if n := histogramCount(t, s, "gitmesh_xds_proxy_convergence_seconds"); n != 1 {
		t.Errorf("gitmesh_xds_proxy_convergence_seconds count = %d; want 1", n)
	}
}

// sumPrefix sums the samples whose key starts with prefix.
func sumPrefix(samples map[string]float64, prefix string) float64 {
	var n float64
	for k, v := range samples {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// histogramCount returns the sample count of the histogram name.
func histogramCount(t *testing.T, s *Server, name string) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// BenchmarkPushToTraffic measures the time from `git push` to traffic
// through a proxy following the new route, with a 1s poll interval (the
// issue's setting). Each op is one push; it reports the median.
//
//	go test -run '^$' -bench PushToTraffic -benchtime 5x ./e2e/
func BenchmarkPushToTraffic(b *testing.B) {
	v1, v2 := e2etest.Backend(b, "v1"), e2etest.Backend(b, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(b)
	repo.Push("reviews: v1", reviewsPolicy(v1Addr, v2Addr, allV1))
	m := startController(b, repo.URL, b.TempDir(), time.Second, "")
	out, _ := startProxy(b, m.ctrl.XDSAddr, "client-1")
	e2etest.Eventually(b, 30*time.Second, "v1", func() string { return only(e2etest.Split(out, "reviews", 5), "v1") })
	var took []time.Duration
	routes, want := []string{allV2, allV1}, []string{"v2", "v1"}
	b.ResetTimer()
	for i := range b.N {
		k := i % 2
		pushed := time.Now()
		repo.Push(fmt.Sprintf("reviews: all to %s", want[k]), reviewsPolicy(v1Addr, v2Addr, routes[k]))
		e2etest.Eventually(b, 30*time.Second, want[k], func() string { return only(e2etest.Split(out, "reviews", 1), want[k]) })
		took = append(took, time.Since(pushed))
	}
	b.StopTimer()
	reportMedian(b, took, "ms-push-to-traffic")
}

// BenchmarkTimeToRollback measures the time from the first failing request
// through a wave-1 proxy to that proxy serving the last good config again,
// with analysis interval 1s and failureThreshold 2 (the target:
// under 5s). Each op is one bad push; it reports the median.
//
//	go test -run '^$' -bench TimeToRollback -benchtime 5x ./e2e/
func BenchmarkTimeToRollback(b *testing.B) {
	cm := newCanaryMeshTB(b, wavesPolicy)
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		pushed := time.Now()
		sha := cm.push(fmt.Sprintf("reviews: broken backend #%d", i), toBad, wavesPolicy)
		ro := cm.waitRollout(b, sha, admin.PhaseRolledBack, 60*time.Second)
		id := ro.Waves[0].Nodes[0]
		firstBad := cm.load.firstAfter(id, "status 503", pushed)
		var back time.Time
		e2etest.Eventually(b, 20*time.Second, "back on v1", func() string {
			if back = cm.load.firstAfter(id, "v1", firstBad); back.IsZero() {
				return cm.load.latest(id)
			}
			return ""
		})
		took = append(took, back.Sub(firstBad))
	}
	b.StopTimer()
	reportMedian(b, took, "ms-to-rollback")
}

// reportMedian reports the median of ds in milliseconds under unit, and
// logs every value.
func reportMedian(b *testing.B, ds []time.Duration, unit string) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	med := ds[len(ds)/2]
	b.ReportMetric(float64(med.Milliseconds()), unit)
	b.ReportMetric(0, "ns/op")
	b.Logf("%s: median %s of %v", unit, med.Round(time.Millisecond), ds)
}

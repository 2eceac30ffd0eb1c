package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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

// BenchmarkWebhookToTraffic measures the time from a signed push webhook
// to every one of four proxies serving the pushed route, with a poll
// interval of an hour so only the webhook can trigger the fetch (the
// issue's target: under 500ms). Each op is one push and delivery; it
// reports the median.
//
//	go test -run '^$' -bench WebhookToTraffic -benchtime 5x ./e2e/
func BenchmarkWebhookToTraffic(b *testing.B) {
	v1, v2 := e2etest.Backend(b, "v1"), e2etest.Backend(b, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(b)
	repo.Push("reviews: v1", reviewsPolicy(v1Addr, v2Addr, allV1))
	const secret = "bench-webhook-secret"
	secretFile := filepath.Join(b.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := controllerConfig(b, repo.URL, b.TempDir(), time.Hour)
	cfg.WebhookSecretFile = secretFile
	m := startControllerConfig(b, cfg)
	var outs []string
	for i := range 4 {
		out, _ := startProxy(b, m.ctrl.XDSAddr, fmt.Sprintf("client-%d", i))
		outs = append(outs, out)
	}
	for _, out := range outs {
		e2etest.Eventually(b, 30*time.Second, "v1 via "+out, func() string { return only(e2etest.Split(out, "reviews", 5), "v1") })
	}
	payload := `{"ref":"refs/heads/main","repository":{"full_name":"example/policy"}}`
	var took []time.Duration
	routes, want := []string{allV2, allV1}, []string{"v2", "v1"}
	b.ResetTimer()
	for i := range b.N {
		k := i % 2
		b.StopTimer()
		repo.Push(fmt.Sprintf("reviews: all to %s", want[k]), reviewsPolicy(v1Addr, v2Addr, routes[k]))
		b.StartTimer()
		delivered := time.Now()
		if got := postHook(b, m.ctrl.AdminAddr, secret, fmt.Sprintf("bench-%d", i), payload); got != http.StatusAccepted {
			b.Fatalf("delivery %d: got %d; want 202", i, got)
		}
		for _, out := range outs {
			e2etest.Poll(b, 10*time.Second, time.Millisecond, want[k]+" via "+out, func() error {
				if got := e2etest.Split(out, "reviews", 1); got[want[k]] != 1 {
					return fmt.Errorf("got %v", got)
				}
				return nil
			})
		}
		took = append(took, time.Since(delivered))
	}
	b.StopTimer()
	reportMedian(b, took, "ms-webhook-to-every-proxy")
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

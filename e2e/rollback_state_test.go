package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// rolloutsOf returns the history entries of the revision whose commit is sha.
func rolloutsOf(t *testing.T, m *mesh, sha string) []admin.Rollout {
	t.Helper()
	h, err := m.ctrl.Reconciler.History(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []admin.Rollout
	for _, ro := range h {
		if strings.HasSuffix(ro.Revision, sha) {
			out = append(out, ro)
		}
	}
	return out
}

// rollBackBad pushes a revision routing reviews to the 503 backend, waits
// for its automatic rollback and for the wave-1 proxy to serve v1 again,
// and returns the SHA with the finished rollout and when that proxy was
// back.
func rollBackBad(t *testing.T, cm *canaryMesh, policy string) (string, *admin.Rollout, time.Time) {
	t.Helper()
	pushed := time.Now()
	sha := cm.push("reviews: to a broken backend", toBad, policy)
	id, firstBad := firstServing(t, cm.load, cm.ids, "status 503", pushed, 30*time.Second)
	ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 30*time.Second)
	back, ok := servesWithin(cm.load, id, "v1", firstBad, 20*time.Second)
	if !ok {
		t.Fatalf("the wave-1 proxy %s is not back on v1 after the rollback (%s)", id, rolloutSummary(cm.mesh))
	}
	return sha, ro, back
}

// waitPolls waits until the controller has polled Git for at least d
// after since (the controllers here poll every 200ms).
func waitPolls(t *testing.T, m *mesh, since time.Time, d time.Duration) {
	t.Helper()
	e2etest.Eventually(t, d+10*time.Second, fmt.Sprintf("polls for %s", d), func() string {
		if last := m.status().LastReconcileTime; last.Before(since.Add(d)) {
			return fmt.Sprintf("last poll at %s", last.Format(time.RFC3339Nano))
		}
		return ""
	})
}

// TestRolledBackRevisionHeldAcrossRestart: a revision rolled back
// automatically is not rolled out again by a restarted controller (history
// keeps one rollout of it, no proxy serves it again) until `resume`, and a
// new commit rolls out as usual. docs/rollouts.md promises it; issue 8
// found a restart retrying it.
func TestRolledBackRevisionHeldAcrossRestart(t *testing.T) {
	policy := faultPolicy("2s", "", "")
	cm := newFaultMesh(t, policy, meshOptions{})
	sha, _, _ := rollBackBad(t, cm, policy)

	cm.mesh.stopWithin(controllerStopTimeout)
	restarted := time.Now()
	cm.mesh = startControllerConfig(t, meshConfig(t, cm, cm.repo.URL, meshOptions{}))
	waitPolls(t, cm.mesh, restarted, 2*time.Second)
	if got := rolloutsOf(t, cm.mesh, sha); len(got) != 1 {
		t.Errorf("history holds %d rollouts of %s after the restart; want the one that was rolled back (the restarted controller retried it)", len(got), sha[:8])
	}
	if ro := cm.status().Rollout; ro != nil && strings.HasSuffix(ro.Revision, sha) && !ro.Phase.Done() {
		t.Errorf("after the restart: %s; want the rolled-back revision held", rolloutSummary(cm.mesh))
	}
	for _, id := range cm.ids {
		if at := cm.load.firstAfter(id, "status 503", restarted); !at.IsZero() {
			t.Errorf("proxy %s served the rolled-back revision again at %s, after the restart", id, at.Format(time.RFC3339Nano))
		}
	}
	if t.Failed() {
		return
	}

	t.Run("resume retries it", func(t *testing.T) {
		res := adminOp(cm.ctrl.AdminAddr, cm.ctrl.Token, admin.Request{Op: admin.OpResume})
		if res.err != nil || res.code != http.StatusOK {
			t.Fatalf("resume: %s; want 200 (it releases the held revision)", res)
		}
		e2etest.Eventually(t, 30*time.Second, "a second rollout of the revision, rolled back again", func() string {
			got := rolloutsOf(t, cm.mesh, sha)
			if len(got) != 2 || got[0].Phase != admin.PhaseRolledBack {
				return fmt.Sprintf("%d rollouts; %s", len(got), rolloutSummary(cm.mesh))
			}
			return ""
		})
	})

	t.Run("a new commit rolls out", func(t *testing.T) {
		next := cm.push("reviews: all to v2", allV2, policy)
		cm.waitRollout(t, next, admin.PhasePromoted, 60*time.Second)
	})
}

// histogram is a Prometheus histogram's count and sum.
type histogram struct {
	count uint64
	sum   float64
}

// scrapeHistogram reads name's _count and _sum from the controller's
// /metrics (zero when it has no observation or is missing).
func scrapeHistogram(t *testing.T, adminAddr, name string) histogram {
	t.Helper()
	resp, err := (&http.Client{Timeout: e2etest.HTTPTimeout}).Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("scraping the controller: %v", err)
	}
	defer resp.Body.Close()
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch key {
		case name + "_count":
			h.count, _ = strconv.ParseUint(val, 10, 64)
		case name + "_sum":
			h.sum, _ = strconv.ParseFloat(val, 64)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the controller's metrics: %v", err)
	}
	return h
}

// TestRollbackDurationMetric: a rollback adds exactly one observation to
// gitmesh_rollback_duration_seconds, soon after the rolled-back proxies run
// the good version again, and its value is the time from the decision to
// the last ACK: under 5s, not the 30s+ of issue 8 (recorded only when the
// next rollout began, or never). Both kinds of automatic rollback: failed
// analysis (the proxy ran the bad version and must ACK the good one) and
// NACK (the proxy never left the good version).
func TestRollbackDurationMetric(t *testing.T) {
	t.Run("analysis", func(t *testing.T) {
		policy := faultPolicy("2s", "", "")
		cm := newFaultMesh(t, policy, meshOptions{})
		before := scrapeHistogram(t, cm.ctrl.AdminAddr, rollbackMetric)
		_, ro, back := rollBackBad(t, cm, policy)
		after := oneRollbackObserved(t, cm, before, ro)
		got := time.Duration((after.sum - before.sum) * float64(time.Second))
		if seen := back.Sub(ro.FinishedAt); got > seen+time.Second {
			t.Errorf("observed rollback duration %s is longer than the %s from the decision to the proxy serving v1 again", got, seen.Round(time.Millisecond))
		}
		// A second rollback right after adds one more.
		_, ro, _ = rollBackBad(t, cm, policy)
		after = oneRollbackObserved(t, cm, after, ro)
		// The next rollout, with no rollback, adds no observation.
		next := cm.push("reviews: all to v2", allV2, policy)
		cm.waitRollout(t, next, admin.PhasePromoted, 60*time.Second)
		if later := scrapeHistogram(t, cm.ctrl.AdminAddr, rollbackMetric); later.count != after.count {
			t.Errorf("%s_count went from %d to %d over a rollout without rollback", rollbackMetric, after.count, later.count)
		}
	})

	t.Run("NACK", func(t *testing.T) {
		cm := newFaultMesh(t, gatewaysFirst, meshOptions{})
		httpAddr, httpsAddr := testnet.FreeAddr(t), testnet.FreeAddr(t)
		startGateway(t, cm.xdsAddr, "gateway-1", httpAddr, httpsAddr)
		files := canaryPolicy(cm.v1, cm.v2, cm.b, allV1, gatewaysFirst)
		files["policy/gateway.yaml"] = edgeGateway(e2etest.PortOf(httpAddr), "")
		sha := cm.repo.Push("edge: serve reviews.example.com", files)
		cm.waitRollout(t, sha, admin.PhasePromoted, 60*time.Second)

		before := scrapeHistogram(t, cm.ctrl.AdminAddr, rollbackMetric)
		files["policy/gateway.yaml"] = edgeGateway(e2etest.PortOf(httpAddr), fmt.Sprintf(`  - port: {number: %s, name: https, protocol: HTTPS}
    hosts: ["reviews.example.com"]
    tls:
      mode: SIMPLE
      serverCertificate: /nonexistent/gitmesh-e2e/cert.pem
      privateKey: /nonexistent/gitmesh-e2e/key.pem
`, e2etest.PortOf(httpsAddr)))
		sha = cm.repo.Push("edge: HTTPS with a certificate that is not on the gateway host", files)
		ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 60*time.Second)
		oneRollbackObserved(t, cm, before, ro)
	})
}

const rollbackMetric = "gitmesh_rollback_duration_seconds"

// oneRollbackObserved waits until the rollback duration histogram has one
// more observation than before and checks it: exactly one, positive and
// under rollbackBudget. It returns the histogram.
func oneRollbackObserved(t *testing.T, cm *canaryMesh, before histogram, ro *admin.Rollout) histogram {
	t.Helper()
	var after histogram
	e2etest.Eventually(t, 10*time.Second, "one rollback duration observed", func() string {
		if after = scrapeHistogram(t, cm.ctrl.AdminAddr, rollbackMetric); after.count == before.count {
			return fmt.Sprintf("%s_count is still %d; the rollback was decided at %s; proxies: %+v", rollbackMetric, after.count, ro.FinishedAt.Format(time.RFC3339Nano), cm.status().Proxies)
		}
		return ""
	})
	if after.count != before.count+1 {
		t.Fatalf("%s_count went from %d to %d; want exactly one more observation for one rollback", rollbackMetric, before.count, after.count)
	}
	got := time.Duration((after.sum - before.sum) * float64(time.Second))
	t.Logf("rollback duration observed: %s (decided at %s: %s)", got.Round(time.Millisecond), ro.FinishedAt.Format(time.RFC3339Nano), ro.Reason)
	if got <= 0 || got > rollbackBudget {
		t.Errorf("observed rollback duration %s; want the time from the decision to the last ACK, under %s", got, rollbackBudget)
	}
	return after
}

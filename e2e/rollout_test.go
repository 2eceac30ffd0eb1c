package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/reconciler"
)

// canaryPolicy returns policy files for reviews with endpoints v1, v2 and
// bad (answering 503), the VirtualService http routes, and rolloutYAML as
// policy/rollout.yaml.
func canaryPolicy(v1, v2, bad string, routes, rolloutYAML string) map[string]string {
	files := reviewsPolicy(v1, v2, routes)
	files["policy/services.yaml"] = strings.Replace(files["policy/services.yaml"], `  - name: v2
    labels:
      version: v2
`, `  - name: v2
    labels:
      version: v2
  - name: bad
    labels:
      version: bad
`, 1) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-bad
spec:
  address: 127.0.0.1
  ports:
    http: %s
  labels:
    app: reviews
    version: bad
`, e2etest.PortOf(bad))
	files["policy/rollout.yaml"] = rolloutYAML
	return files
}

// The RolloutPolicy shape, with a 2s bake.
const wavesPolicy = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default, namespace: default}
spec:
  waves:
  - {percent: 25, bake: 2s}
  - {percent: 100, bake: 0s}
  analysis:
    interval: 1s
    failureThreshold: 2
    minRequests: 3
    metrics:
    - {name: request-success-rate, min: 99}
    - {name: request-duration, maxP99: 500ms}
  progressDeadline: 2m
`

const toBad = `  - route:
    - destination:
        host: reviews
        subset: bad
`

// canaryMesh is a controller with four client proxies under load.
type canaryMesh struct {
	*mesh
	repo      *e2etest.GitRemote
	load      *loader
	ids       []string
	v1, v2, b string
	xdsAddr   string
	stateDir  string
	admins    []string
}

// newCanaryMesh pushes the first revision (all to v1, with rollout as the
// RolloutPolicy), starts the controller and four proxies under load, and
// waits until all of them serve v1.
func newCanaryMesh(t *testing.T, rollout string) *canaryMesh { return newCanaryMeshTB(t, rollout) }

// newCanaryMeshTB is newCanaryMesh for tests and benchmarks.
func newCanaryMeshTB(t testing.TB, rollout string) *canaryMesh {
	return newFaultMesh(t, rollout, meshOptions{})
}

// push commits files on top of the current policy and returns the SHA.
func (cm *canaryMesh) push(msg, routes, rollout string) string {
	return cm.repo.Push(msg, canaryPolicy(cm.v1, cm.v2, cm.b, routes, rollout))
}

// waitRollout waits for the rollout of sha to reach phase.
func (cm *canaryMesh) waitRollout(t testing.TB, sha string, phase admin.Phase, timeout time.Duration) *admin.Rollout {
	t.Helper()
	var ro *admin.Rollout
	e2etest.Eventually(t, timeout, fmt.Sprintf("rollout of %s %s", sha[:8], phase), func() string {
		st := cm.status()
		ro = st.Rollout
		if ro == nil || !strings.HasSuffix(ro.Revision, sha) {
			return fmt.Sprintf("rollout %+v (ready %+v)", ro, st.Ready())
		}
		if ro.Phase != phase {
			return fmt.Sprintf("phase %s, waiting: %s, reason: %s", ro.Phase, ro.Waiting, ro.Reason)
		}
		return ""
	})
	return ro
}

func (cm *canaryMesh) do(t *testing.T, req admin.Request) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cm.ctrl.Reconciler.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	if res.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", req.Op, res.Code, res.Message)
	}
	return res.Message
}

// TestRolloutWaves: a good change goes wave by wave (wave 2 only after
// wave 1 baked) and ends Promoted; a change that makes traffic fail is
// caught in wave 1 and rolled back automatically, wave 2 never sees it;
// `rollback --to` returns the fleet to an older good revision and holds it.
func TestRolloutWaves(t *testing.T) {
	cm := newCanaryMesh(t, wavesPolicy)
	first := cm.status().LastAppliedRevision

	t.Run("good change rolls out wave by wave", func(t *testing.T) {
		sha := cm.push("reviews: all to v2", allV2, wavesPolicy)
		ro := cm.waitRollout(t, sha, admin.PhasePromoted, 60*time.Second)
		if len(ro.Waves) != 2 || len(ro.Waves[0].Nodes) != 1 || len(ro.Waves[1].Nodes) != 3 {
			t.Fatalf("waves = %+v; want 1 proxy (25%% of 4), then the other 3", ro.Waves)
		}
		baked := ro.Waves[0].BakedAt
		for _, id := range ro.Waves[0].Nodes {
			if at := cm.load.first(id, "v2"); at.IsZero() || !at.Before(baked) {
				t.Errorf("wave-1 proxy %s first served v2 at %v; want before wave 1 baked at %v", id, at, baked)
			}
		}
		for _, id := range ro.Waves[1].Nodes {
			var at time.Time
			e2etest.Eventually(t, 10*time.Second, "wave-2 proxy "+id+" serves v2", func() string {
				if at = cm.load.first(id, "v2"); at.IsZero() {
					return cm.load.latest(id)
				}
				return ""
			})
			if at.Before(baked) {
				t.Errorf("wave-2 proxy %s first served v2 at %v; want after wave 1 baked at %v", id, at, baked)
			}
		}
		if st := cm.status(); !strings.HasSuffix(st.LastAppliedRevision, sha) {
			t.Errorf("LastAppliedRevision = %s; want %s", st.LastAppliedRevision, sha)
		}
	})

	t.Run("failing change is rolled back in wave 1", func(t *testing.T) {
		good := cm.status().LastAppliedRevision
		pushed := time.Now()
		sha := cm.push("reviews: to a broken backend", toBad, wavesPolicy)
		ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 60*time.Second)
		if !strings.Contains(ro.Reason, "request-success-rate") {
			t.Errorf("reason = %q; want it to name the failed request-success-rate check", ro.Reason)
		}
		wave1 := ro.Waves[0].Nodes
		for _, id := range cm.ids {
			inWave1 := len(wave1) > 0 && id == wave1[0]
			firstBad := cm.load.firstAfter(id, "status 503", pushed)
			if !inWave1 {
				if !firstBad.IsZero() {
					t.Errorf("wave-2 proxy %s served the bad version at %v", id, firstBad)
				}
				continue
			}
			if firstBad.IsZero() {
				t.Fatalf("wave-1 proxy %s never served the bad version", id)
			}
			var back time.Time
			e2etest.Eventually(t, 20*time.Second, "wave-1 proxy back on v2", func() string {
				if back = cm.load.firstAfter(id, "v2", firstBad); back.IsZero() {
					return cm.load.latest(id)
				}
				return ""
			})
			t.Logf("time to rollback (first failing request on %s -> serving the last good config again): %s", id, back.Sub(firstBad).Round(time.Millisecond))
			if d := back.Sub(firstBad); d > 10*time.Second {
				t.Errorf("rollback took %s; want well under 10s (target 5s)", d)
			}
		}
		st := cm.status()
		if st.LastAppliedRevision != good {
			t.Errorf("LastAppliedRevision = %s; want it to stay %s", st.LastAppliedRevision, good)
		}
		if c := st.Ready(); c == nil || c.Reason != reconciler.ReasonRolloutFailed {
			t.Errorf("Ready = %+v; want reason %s", c, reconciler.ReasonRolloutFailed)
		}
		// The failed revision is not retried: polls go on, it stays rolled back.
		// Polls every 200ms: a reconcile more than 500ms after n was read
		// means at least two polls saw the failed revision.
		since := time.Now()
		n := len(mustHistory(t, cm))
		e2etest.Eventually(t, 5*time.Second, "a few polls", func() string {
			if !cm.status().LastReconcileTime.After(since.Add(500 * time.Millisecond)) {
				return "no poll yet"
			}
			return ""
		})
		if got := len(mustHistory(t, cm)); got != n {
			t.Errorf("history grew from %d to %d; the failed revision was retried", n, got)
		}
	})

	t.Run("rollback --to an older good revision holds there", func(t *testing.T) {
		_, sha, _ := strings.Cut(first, "sha1:")
		msg := cm.do(t, admin.Request{Op: admin.OpRollback, To: sha[:10]})
		t.Log(msg)
		e2etest.Eventually(t, 20*time.Second, "every proxy back on v1", func() string {
			for _, id := range cm.ids {
				if got := cm.load.latest(id); got != "v1" {
					return fmt.Sprintf("%s answers %q", id, got)
				}
			}
			return ""
		})
		st := cm.status()
		if st.Hold == nil || st.Hold.Revision != first {
			t.Fatalf("hold = %+v; want held at %s", st.Hold, first)
		}
		// A new commit releases the hold and rolls out as usual.
		newSha := cm.push("reviews: 50/50", fiftyFifty, wavesPolicy)
		cm.waitRollout(t, newSha, admin.PhasePromoted, 60*time.Second)
		if st := cm.status(); st.Hold != nil {
			t.Errorf("hold = %+v after a new commit; want released", st.Hold)
		}
	})
}

func mustHistory(t *testing.T, cm *canaryMesh) []admin.Rollout {
	t.Helper()
	h, err := cm.ctrl.Reconciler.History(0)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRolloutSurvivesControllerRestart kills the controller while wave 1
// bakes: the restarted controller resumes the same rollout, the wave-1
// proxy is never pushed back to the older version, and the others never
// get the new one early.
func TestRolloutSurvivesControllerRestart(t *testing.T) {
	longBake := strings.Replace(wavesPolicy, "{percent: 25, bake: 2s}", "{percent: 25, bake: 1h}", 1)
	cm := newCanaryMesh(t, longBake)
	sha := cm.push("reviews: all to v2", allV2, longBake)
	ro := cm.waitRollout(t, sha, admin.PhaseBaking, 60*time.Second)
	wave1 := ro.Waves[0].Nodes[0]
	var switched time.Time
	e2etest.Eventually(t, 10*time.Second, "the wave-1 proxy serves v2", func() string {
		if switched = cm.load.first(wave1, "v2"); switched.IsZero() {
			return cm.load.latest(wave1)
		}
		return ""
	})

	cm.stop()
	m2 := startController(t, cm.repo.URL, cm.stateDir, 200*time.Millisecond, cm.xdsAddr)
	cm.mesh = m2
	ro2 := cm.waitRollout(t, sha, admin.PhaseBaking, 60*time.Second)
	if ro2.ID != ro.ID || ro2.Waves[0].Nodes[0] != wave1 {
		t.Fatalf("after restart rollout #%d wave 1 %v; want the same rollout #%d with %s", ro2.ID, ro2.Waves[0].Nodes, ro.ID, wave1)
	}
	if at := cm.load.firstAfter(wave1, "v1", switched); !at.IsZero() {
		t.Errorf("wave-1 proxy %s went back to v1 at %v after the restart", wave1, at)
	}
	for _, id := range cm.ids {
		if id != wave1 && !cm.load.first(id, "v2").IsZero() {
			t.Errorf("proxy %s outside wave 1 got v2 early", id)
		}
	}

	// A proxy that connects mid-rollout gets the last good version until
	// its wave comes.
	late, _ := startProxy(t, cm.xdsAddr, "client-late")
	e2etest.Eventually(t, 20*time.Second, "the late proxy serves the last good version", func() string {
		return only(e2etest.Split(late, "reviews", 5), "v1")
	})

	// A new commit supersedes the rollout in flight and starts from wave 1.
	next := cm.push("reviews: 50/50", fiftyFifty, longBake)
	cm.waitRollout(t, next, admin.PhaseBaking, 30*time.Second)
	if h := mustHistory(t, cm); len(h) < 2 || h[1].ID != ro.ID || h[1].Phase != admin.PhaseSuperseded {
		t.Errorf("history %+v; want rollout #%d Superseded", h, ro.ID)
	}

	cm.do(t, admin.Request{Op: admin.OpPromote, Full: true})
	cm.waitRollout(t, next, admin.PhasePromoted, 10*time.Second)
	e2etest.Eventually(t, 20*time.Second, "every proxy on the 50/50 split", func() string {
		for _, out := range []string{late} {
			got := e2etest.Split(out, "reviews", 40)
			if got["v1"] == 0 || got["v2"] == 0 {
				return fmt.Sprintf("late proxy: %v", got)
			}
		}
		return ""
	})
}

// TestRolloutDenyWindowHolds: inside a deny window a new revision waits
// (status says until when) and no proxy gets it; promote starts it anyway.
func TestRolloutDenyWindowHolds(t *testing.T) {
	frozen := wavesPolicy + `  windows:
  - {name: freeze, schedule: "* * * * *", duration: 2m, action: deny}
`
	cm := newCanaryMesh(t, frozen)
	sha := cm.push("reviews: all to v2", allV2, frozen)
	cm.waitRollout(t, sha, admin.PhasePending, 30*time.Second)
	e2etest.Eventually(t, 5*time.Second, "status names the deny window and until when", func() string {
		if ro := cm.status().Rollout; !strings.Contains(ro.Waiting, "deny window freeze is open until") {
			return fmt.Sprintf("waiting = %q", ro.Waiting)
		}
		return ""
	})
	for _, id := range cm.ids {
		if !cm.load.first(id, "v2").IsZero() {
			t.Errorf("proxy %s got v2 during the freeze", id)
		}
	}
	cm.do(t, admin.Request{Op: admin.OpPromote, Full: true})
	cm.waitRollout(t, sha, admin.PhasePromoted, 20*time.Second)
}

// TestRolloutConfirmPromotionWebhook: the confirm-promotion webhook gates
// the move to wave 2 until it answers 200; event webhooks hear each phase.
func TestRolloutConfirmPromotionWebhook(t *testing.T) {
	var allow atomic.Bool
	var events atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			events.Add(1)
			return
		}
		if !allow.Load() {
			http.Error(w, "not yet", http.StatusConflict)
		}
	}))
	t.Cleanup(hook.Close)
	gated := strings.Replace(wavesPolicy, "{percent: 25, bake: 2s}", "{percent: 25, bake: 0s}", 1) + fmt.Sprintf(`  webhooks:
  - {name: gate, type: confirm-promotion, url: %q}
  - {name: audit, type: event, url: %q}
`, hook.URL+"/confirm", hook.URL+"/events")
	cm := newCanaryMesh(t, gated)
	sha := cm.push("reviews: all to v2", allV2, gated)
	e2etest.Eventually(t, 30*time.Second, "waiting for the gate", func() string {
		ro := cm.status().Rollout
		if ro == nil || !strings.HasSuffix(ro.Revision, sha) || !strings.Contains(ro.Waiting, "confirm-promotion webhook gate") {
			return fmt.Sprintf("%+v", ro)
		}
		return ""
	})
	for _, id := range cm.ids {
		if ro := cm.status().Rollout; id != ro.Waves[0].Nodes[0] && !cm.load.first(id, "v2").IsZero() {
			t.Errorf("proxy %s outside wave 1 got v2 before the gate opened", id)
		}
	}
	allow.Store(true)
	cm.waitRollout(t, sha, admin.PhasePromoted, 30*time.Second)
	e2etest.Eventually(t, 10*time.Second, "event webhooks called", func() string {
		if n := events.Load(); n < 3 {
			return fmt.Sprintf("%d events", n)
		}
		return ""
	})
}

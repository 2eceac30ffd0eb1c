package reconciler

import (
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
)

// Rollout policies of the state machine tests. A canary wave of 25% (one
// proxy of four), then everyone.
const (
	// quickBake moves through both waves at once.
	quickBake = `  waves:
  - {name: canary, percent: 25, bake: 10ms}
  - {name: everyone, percent: 100}
`
	// longBake keeps the canary wave baking until the test acts.
	longBake = `  waves:
  - {name: canary, percent: 25, bake: 1h}
  - {name: everyone, percent: 100}
`
	// shortDeadline fails a wave that is not done within 200ms.
	shortDeadline = `  waves:
  - {name: canary, percent: 25, bake: 1h}
  - {name: everyone, percent: 100}
  progressDeadline: 200ms
`
)

// maxDecisionLatency bounds how long an admin command or a NACK may take
// to be acted on while a fetch hangs. The loop ticks every 5ms; the bound
// leaves room for a loaded machine and the race detector, and is still far
// below the hung fetch's 10s timeout it must not wait for.
const maxDecisionLatency = time.Second

// TestRolloutStateMachine drives a real Reconciler through the Fleet
// interface: each case commits revisions to a fake source, lets fake
// proxies ACK or NACK them, and checks where the rollout, the fleet and
// the Ready condition end up.
func TestRolloutStateMachine(t *testing.T) {
	tests := []struct {
		name string
		opts harnessOpts
		run  func(t *testing.T, h *harness)
	}{
		{
			name: "a good revision is promoted wave by wave",
			opts: harnessOpts{rollout: quickBake},
			run: func(t *testing.T, h *harness) {
				rev := h.commit("v2")
				s := h.waitPhase(rev, admin.PhasePromoted)
				if got := len(s.Rollout.Waves[0].Nodes); got != 1 {
					t.Errorf("canary wave updated %d proxies; want 1", got)
				}
				if got := len(s.Rollout.Waves[1].Nodes); got != 3 {
					t.Errorf("second wave updated %d proxies; want 3", got)
				}
				h.waitFleetOn(rev)
				h.waitStatus("Ready=True Succeeded at "+rev, func(s admin.Status) bool {
					st, reason, _ := ready(s)
					return st == "True" && reason == ReasonSucceeded && s.LastAppliedRevision == rev
				})
			},
		},
		{
			name: "a new commit supersedes the rollout in flight",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				first := h.commit("v2")
				c := canary(t, h.waitPhase(first, admin.PhaseBaking))
				second := h.commit("v3")
				s := h.waitPhase(second, admin.PhaseBaking)
				if got := canary(t, s); got != c {
					t.Errorf("canary of the new rollout is %s; want %s (wave membership is stable)", got, c)
				}
				for _, p := range s.Proxies {
					if want := map[bool]string{true: second, false: h.good}[p.ID == c]; p.Revision != want {
						t.Errorf("proxy %s runs %s; want %s", p.ID, p.Revision, want)
					}
				}
				hist, err := h.r.History(0)
				if err != nil {
					t.Fatal(err)
				}
				if ro := findRollout(hist, first); ro == nil || ro.Phase != admin.PhaseSuperseded || !strings.Contains(ro.Reason, second) {
					t.Errorf("history of %s: %+v; want Superseded by %s", first, ro, second)
				}
			},
		},
		{
			name: "abort rolls back and the revision is not retried",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				h.waitPhase(bad, admin.PhaseBaking)
				res, _ := h.do(admin.OpAbort)
				if res.Code != http.StatusOK {
					t.Fatalf("abort answered %d %q; want 200", res.Code, res.Message)
				}
				s := h.waitFleetOn(h.good)
				if s.Rollout.Phase != admin.PhaseAborted || !strings.HasPrefix(s.Rollout.Reason, "aborted by a person") {
					t.Errorf("rollout %s %q; want Aborted, aborted by a person", s.Rollout.Phase, s.Rollout.Reason)
				}
				h.assertNotRetried(s.Rollout.ID, bad, ReasonRolloutFailed)
			},
		},
		{
			name: "a NACK during bake rolls back and the revision is not retried",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				c := canary(t, h.waitPhase(bad, admin.PhaseBaking))
				h.fleet.nack(c, "listener 0.0.0.0:15001: unknown filter")
				s := h.waitPhase(bad, admin.PhaseRolledBack)
				if !strings.Contains(s.Rollout.Reason, "proxy "+c+" NACKed") || !strings.Contains(s.Rollout.Reason, "unknown filter") {
					t.Errorf("reason %q; want the proxy and its NACK", s.Rollout.Reason)
				}
				s = h.waitFleetOn(h.good)
				h.assertNotRetried(s.Rollout.ID, bad, ReasonRolloutFailed)
			},
		},
		{
			name: "a refused revision is in history once, with its diagnostics, across a restart",
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v9") // no such subset
				refused := func(s admin.Status) bool {
					c := s.Ready()
					return s.LastAttemptedRevision == bad && c != nil && c.Reason == ReasonValidationFailed
				}
				h.waitStatus("the revision refused", refused)
				h.waitFetches(2)
				h.restart()
				h.waitStatus("the revision refused again after the restart", refused)
				h.waitFetches(2)
				hist, err := h.r.History(0)
				if err != nil {
					t.Fatal(err)
				}
				var recs []admin.Rollout
				for _, ro := range hist {
					if ro.Revision == bad {
						recs = append(recs, ro)
					}
				}
				if len(recs) != 1 {
					t.Fatalf("history has %d records of %s: %+v; want one", len(recs), bad, recs)
				}
				ro := recs[0]
				if ro.Phase != admin.PhaseRefused || ro.Trigger != admin.TriggerCommit || !strings.HasPrefix(ro.Reason, ReasonValidationFailed+": ") {
					t.Errorf("record %s %s %q; want commit Refused with reason ValidationFailed: ...", ro.Trigger, ro.Phase, ro.Reason)
				}
				if len(ro.Diagnostics) == 0 || ro.Diagnostics[0].Origin.Line == 0 || !strings.Contains(ro.Diagnostics[0].String(), "v9") {
					t.Errorf("diagnostics %v; want the undefined subset with its file:line", ro.Diagnostics)
				}
				if s := h.r.Status(); s.LastAppliedRevision != h.good {
					t.Errorf("serving %s; want %s still", s.LastAppliedRevision, h.good)
				}
			},
		},
		{
			name: "a wave that never ACKs fails at the progress deadline",
			opts: harnessOpts{rollout: shortDeadline},
			run: func(t *testing.T, h *harness) {
				h.fleet.setAutoAck(false)
				bad := h.commit("v2")
				s := h.waitPhase(bad, admin.PhaseFailed)
				if !strings.Contains(s.Rollout.Reason, "progressDeadline 200ms") {
					t.Errorf("reason %q; want the progress deadline", s.Rollout.Reason)
				}
				if took := s.Rollout.FinishedAt.Sub(s.Rollout.StartedAt); took < 200*time.Millisecond {
					t.Errorf("failed after %s; want not before the 200ms deadline", took)
				}
				h.fleet.setAutoAck(true)
				h.fleet.ackAll()
				s = h.waitFleetOn(h.good)
				h.assertNotRetried(s.Rollout.ID, bad, ReasonRolloutFailed)
			},
		},
		{
			name: "a NACK while paused rolls back at once",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				c := canary(t, h.waitPhase(bad, admin.PhaseBaking))
				if res, _ := h.do(admin.OpPause); res.Code != http.StatusOK {
					t.Fatalf("pause answered %d %q", res.Code, res.Message)
				}
				h.fleet.nack(c, "route 0: unknown cluster")
				s := h.waitPhase(bad, admin.PhaseRolledBack)
				if !strings.Contains(s.Rollout.Reason, "proxy "+c+" NACKed") {
					t.Errorf("reason %q; want the proxy's NACK", s.Rollout.Reason)
				}
				s = h.waitFleetOn(h.good)
				h.assertNotRetried(s.Rollout.ID, bad, ReasonRolloutFailed)
			},
		},
		{
			name: "pause holds the bake; resume bakes afresh",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				rev := h.commit("v2")
				s := h.waitPhase(rev, admin.PhaseBaking)
				id, synced := s.Rollout.ID, s.Rollout.Waves[0].SyncedAt
				if res, _ := h.do(admin.OpPause); res.Code != http.StatusOK {
					t.Fatalf("pause answered %d %q", res.Code, res.Message)
				}
				h.waitFetches(2)
				s = h.r.Status()
				if s.Rollout.ID != id || s.Rollout.Phase != admin.PhasePaused || s.Rollout.PausedFrom != admin.PhaseBaking {
					t.Fatalf("after pause: %s; want rollout %d Paused from Baking", describe(s), id)
				}
				if res, _ := h.do(admin.OpPause); res.Code != http.StatusConflict {
					t.Errorf("second pause answered %d; want 409", res.Code)
				}
				if res, _ := h.do(admin.OpResume); res.Code != http.StatusOK {
					t.Fatalf("resume answered %d %q", res.Code, res.Message)
				}
				s = h.waitStatus("the canary wave to bake again", func(s admin.Status) bool {
					return s.Rollout.Phase == admin.PhaseBaking && s.Rollout.Waves[0].SyncedAt.After(synced)
				})
				if s.Rollout.ID != id || s.Rollout.Wave != 0 {
					t.Errorf("after resume: rollout %d wave %d; want rollout %d wave 0", s.Rollout.ID, s.Rollout.Wave, id)
				}
			},
		},
		{
			name: "a manual rollback holds until a new commit",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				h.waitPhase(bad, admin.PhaseBaking)
				if res, _ := h.do(admin.OpRollback); res.Code != http.StatusOK {
					t.Fatalf("rollback answered %d %q", res.Code, res.Message)
				}
				s := h.waitFleetOn(h.good)
				if s.Hold == nil || s.Hold.Revision != h.good || s.Hold.Head != bad {
					t.Fatalf("hold %+v; want at %s, head %s", s.Hold, h.good, bad)
				}
				// A hold is not a failure: Ready is True, reason Held.
				h.assertNotRetried(s.Rollout.ID, bad, ReasonHeld)
				next := h.commit("v3")
				s = h.waitPhase(next, admin.PhaseBaking)
				if s.Hold != nil {
					t.Errorf("hold %+v after a new commit; want released", s.Hold)
				}
			},
		},
		{
			name: "resume releases a manual rollback's hold",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				h.waitPhase(bad, admin.PhaseBaking)
				h.do(admin.OpRollback)
				s := h.waitStatus("the hold", func(s admin.Status) bool { return s.Hold != nil })
				id := s.Rollout.ID
				if res, _ := h.do(admin.OpResume); res.Code != http.StatusOK || !strings.Contains(res.Message, "released the hold") {
					t.Fatalf("resume answered %d %q; want the hold released", res.Code, res.Message)
				}
				s = h.waitPhase(bad, admin.PhaseBaking)
				if s.Rollout.ID == id || s.Hold != nil {
					t.Errorf("after resume: rollout %d, hold %+v; want a new rollout and no hold", s.Rollout.ID, s.Hold)
				}
			},
		},
		{
			name: "a rolled-back revision stays held across a restart until resume",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				c := canary(t, h.waitPhase(bad, admin.PhaseBaking))
				h.fleet.nack(c, "bad listener")
				s := h.waitPhase(bad, admin.PhaseRolledBack)
				id := s.Rollout.ID
				h.waitFleetOn(h.good)
				sets := h.fleet.setCounts()

				h.restart()
				h.waitFetches(3)
				s = h.r.Status()
				if s.Rollout != nil && !s.Rollout.Phase.Done() {
					t.Fatalf("after restart: %s; want no rollout in flight", describe(s))
				}
				if !fleetOn(s, h.good) {
					t.Errorf("after restart: %s; want every proxy on %s", describe(s), h.good)
				}
				if st, reason, msg := ready(s); st != "False" || reason != ReasonRolloutFailed || !strings.Contains(msg, bad) {
					t.Errorf("after restart: Ready=%s %s %q; want False %s naming %s", st, reason, msg, ReasonRolloutFailed, bad)
				}
				if got := h.fleet.setCounts(); !equalCounts(got, sets) {
					t.Errorf("the restarted controller re-assigned snapshots: %v, was %v; want nothing pushed", got, sets)
				}
				hist, err := h.r.History(0)
				if err != nil {
					t.Fatal(err)
				}
				if ro := findRollout(hist, bad); ro == nil || ro.ID != id || ro.Phase != admin.PhaseRolledBack {
					t.Errorf("history of %s after restart: %+v; want rollout %d RolledBack", bad, ro, id)
				}

				if res, _ := h.do(admin.OpResume); res.Code != http.StatusOK || !strings.Contains(res.Message, "released "+bad) {
					t.Fatalf("resume answered %d %q; want %s released", res.Code, res.Message, bad)
				}
				if got := h.r.Status().LastAttemptedRevision; got != bad {
					t.Errorf("lastAttemptedRevision right after resume = %q; want %s (still the one attempted)", got, bad)
				}
				s = h.waitPhase(bad, admin.PhaseBaking)
				if s.Rollout.ID == id {
					t.Errorf("resume did not start a new rollout of %s", bad)
				}
			},
		},
		{
			name: "a restart mid-bake resumes the rollout and bakes afresh",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				rev := h.commit("v2")
				s := h.waitPhase(rev, admin.PhaseBaking)
				id, synced := s.Rollout.ID, s.Rollout.Waves[0].SyncedAt
				h.restart()
				s = h.waitStatus("the resumed wave to bake again", func(s admin.Status) bool {
					return s.Rollout != nil && s.Rollout.Phase == admin.PhaseBaking && s.Rollout.Waves[0].SyncedAt.After(synced)
				})
				if s.Rollout.ID != id || s.Rollout.Revision != rev {
					t.Errorf("after restart: rollout %d of %s; want %d of %s", s.Rollout.ID, s.Rollout.Revision, id, rev)
				}
			},
		},
		{
			name: "abort answers within a tick while a fetch hangs",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				h.waitPhase(bad, admin.PhaseBaking)
				h.hangSource()
				h.abortWhileHung("a fetch")
				t.Logf("every proxy back on the good revision %s after the fetch hung", time.Since(h.hungAt).Round(time.Millisecond))
				h.checkFetchStillHung()
			},
		},
		{
			name: "a NACK rolls back within a tick while a fetch hangs",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				bad := h.commit("v2")
				c := canary(t, h.waitPhase(bad, admin.PhaseBaking))
				h.hangSource()
				start := time.Now()
				h.fleet.nack(c, "bad listener")
				h.waitPhase(bad, admin.PhaseRolledBack)
				decided := time.Since(start)
				h.waitFleetOn(h.good)
				t.Logf("NACK to RolledBack in %s, to every proxy on the good revision in %s", decided, time.Since(start))
				if decided > maxDecisionLatency {
					t.Errorf("NACK acted on after %s while a fetch hung; want under %s", decided, maxDecisionLatency)
				}
				h.checkFetchStillHung()
			},
		},
		{
			name: "a trigger during a fetch in flight starts no second fetch",
			opts: harnessOpts{rollout: longBake},
			run: func(t *testing.T, h *harness) {
				h.hangSource()
				calls := h.src.calls.Load()
				for range 5 {
					h.r.Trigger()
					h.waitTriggerTaken()
				}
				// A command round trip makes sure the loop went past every
				// trigger; a second Fetch would also fail the test inside
				// fakeSource.Fetch, where calls may not overlap.
				h.roundTrip()
				if got := h.src.calls.Load(); got != calls {
					t.Fatalf("%d Fetch calls while one hung; want %d", got, calls)
				}
				next := h.src.commit(policyFiles("v2", longBake))
				h.src.resume()
				// The coalesced trigger fetches once more after the hung one,
				// and finds the new commit.
				h.waitPhase(next, admin.PhaseBaking)
			},
		},
		{
			name: "a fetch that hangs past the timeout fails, and the next one succeeds",
			opts: harnessOpts{rollout: longBake, fetchTimeout: 100 * time.Millisecond},
			run: func(t *testing.T, h *harness) {
				h.hangSource()
				s := h.waitStatus("Ready=False FetchFailed", func(s admin.Status) bool {
					_, reason, _ := ready(s)
					return reason == ReasonFetchFailed
				})
				if _, _, msg := ready(s); !strings.Contains(msg, "timed out after 100ms") {
					t.Errorf("Ready message %q; want it to say the fetch timed out", msg)
				}
				if !fleetOn(s, h.good) {
					t.Errorf("%s; want every proxy still on %s", describe(s), h.good)
				}
				h.src.resume()
				h.waitStatus("Ready=True again", func(s admin.Status) bool {
					st, _, _ := ready(s)
					return st == "True"
				})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newHarness(t, tc.opts))
		})
	}
}

// assertNotRetried checks that the finished rollout id of revision bad
// stays the last one while the source keeps serving bad, that Ready says
// why (reason RolloutFailed, or Held after a manual rollback), and that
// the failure is in the store for a restarted controller.
func (h *harness) assertNotRetried(id uint64, bad, reason string) {
	h.t.Helper()
	h.waitFetches(2)
	s := h.r.Status()
	if s.Rollout == nil || s.Rollout.ID != id || !s.Rollout.Phase.Done() {
		h.t.Errorf("after more fetches of %s: %s; want rollout %d still the last, finished", bad, describe(s), id)
	}
	wantStatus, wantIn := "False", bad
	if reason == ReasonHeld {
		wantStatus, wantIn = "True", "held at "+h.good
	}
	if st, got, msg := ready(s); st != wantStatus || got != reason || !strings.Contains(msg, wantIn) {
		h.t.Errorf("Ready=%s %s %q; want %s %s with %q", st, got, msg, wantStatus, reason, wantIn)
	}
	if f, err := h.store.Failure(); err != nil || f == nil || f.Revision != bad {
		h.t.Errorf("stored failure %+v, %v; want %s", f, err, bad)
	}
}

// hangSource makes the source hang and waits until a fetch hangs in it.
func (h *harness) hangSource() {
	h.t.Helper()
	h.src.hang()
	h.r.Trigger()
	select {
	case <-h.src.hung:
		h.hungAt = time.Now()
	case <-time.After(waitLimit):
		h.t.Fatalf("no fetch hung within %s", waitLimit)
	}
}

// abortWhileHung sends abort while what (a fetch, a scrape, the
// webhook) hangs, checks that it answers 200 within maxDecisionLatency,
// and returns the status once every proxy is back on the good revision.
func (h *harness) abortWhileHung(what string) admin.Status {
	h.t.Helper()
	res, took := h.do(admin.OpAbort)
	if res.Code != http.StatusOK {
		h.t.Fatalf("abort answered %d %q", res.Code, res.Message)
	}
	s := h.waitFleetOn(h.good)
	h.t.Logf("abort answered in %s while %s hung", took, what)
	if took > maxDecisionLatency {
		h.t.Errorf("abort took %s while %s hung; want under %s", took, what, maxDecisionLatency)
	}
	return s
}

// checkFetchStillHung checks that the fetch hangSource hung is still the
// one fetch in flight.
func (h *harness) checkFetchStillHung() {
	h.t.Helper()
	if n := h.src.active.Load(); n != 1 {
		h.t.Errorf("%d fetches in flight; want the hung one still hanging", n)
	}
}

// waitTriggerTaken waits until the loop took the pending trigger.
func (h *harness) waitTriggerTaken() {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(h.r.trigger) > 0 {
		if time.Now().After(deadline) {
			h.t.Fatalf("the loop did not take a trigger within %s", waitLimit)
		}
		<-tick.C
	}
}

// roundTrip sends the loop a command that changes nothing (promote with
// no rollout in flight) and waits for its answer: everything the loop
// took before it has been handled.
func (h *harness) roundTrip() {
	h.t.Helper()
	if res, _ := h.do(admin.OpPromote); res.Code != http.StatusConflict {
		h.t.Fatalf("promote with nothing in flight answered %d %q; want 409", res.Code, res.Message)
	}
}

// findRollout returns the newest rollout of rev in hist (newest first).
func findRollout(hist []admin.Rollout, rev string) *admin.Rollout {
	for i := range hist {
		if hist[i].Revision == rev {
			return &hist[i]
		}
	}
	return nil
}

func equalCounts(a, b map[string]int) bool { return maps.Equal(a, b) }

package reconciler

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
	"github.com/gitmesh/gitmesh/xds"
)

// startRollout makes canary the in-flight rollout (superseding one that is
// in flight) and takes its first step. Called from the Run goroutine.
func (r *Reconciler) startRollout(ctx context.Context, canary *served, spec v1alpha1.RolloutPolicySpec, trigger string) {
	now := time.Now().UTC()
	r.mu.Lock()
	prev := r.rollout
	stableRev := ""
	if r.stable != nil {
		stableRev = r.stable.Revision
	}
	r.mu.Unlock()
	if prev != nil && !prev.Phase.Done() {
		r.finish(ctx, prev, admin.PhaseSuperseded, "superseded by "+canary.Revision)
	}
	ro := &rollout{
		Rollout: admin.Rollout{
			Revision: canary.Revision, Version: canary.Version, PreviousRevision: stableRev,
			Trigger: trigger, Phase: admin.PhasePending, StartedAt: now, Policy: spec,
		},
		Canary: canary, updated: map[string]bool{},
	}
	for i := range effectiveWaves(spec) {
		ro.Waves = append(ro.Waves, admin.WaveRecord{Name: waveName(spec, i)})
	}
	if err := r.saveRollout(ro); err != nil {
		r.log.Warn("saving rollout", "error", err)
	}
	r.mu.Lock()
	r.rollout = ro
	r.mu.Unlock()
	r.log.Info("rollout started", "rollout", ro.ID, "revision", ro.Revision, "waves", len(ro.Waves))
	r.event(ctx, ro)
	r.stepRollout(ctx)
}

// stepRollout advances the in-flight rollout as far as it can now. It is
// called on every rollout tick and fleet change, from the Run goroutine
// only, which owns the Rollout; fields read by Status are written under mu.
func (r *Reconciler) stepRollout(ctx context.Context) {
	r.mu.Lock()
	ro := r.rollout
	r.mu.Unlock()
	if ro == nil || ro.Phase.Done() {
		return // nothing in flight: Ready only changes with a reconcile
	}
	defer r.refreshReady()
	nodes := connected(r.cfg.Fleet.Nodes())
	// A NACK rolls back at once, also while a person has paused the
	// rollout: a paused wave still runs the version the proxy rejected.
	if n, ok := nackedNode(ro, nodes); ok && ro.Phase != admin.PhasePending {
		r.rollback(ctx, ro, admin.PhaseRolledBack, fmt.Sprintf("proxy %s NACKed %s: %s", n.Workload.ID, ro.Revision, n.NACK.Error))
		return
	}
	if ro.Phase != admin.PhasePending && ro.Phase != admin.PhasePaused {
		if deadline := ro.Policy.EffectiveProgressDeadline(); time.Since(ro.waveStarted) > deadline {
			r.rollback(ctx, ro, admin.PhaseFailed, fmt.Sprintf("%s did not finish within progressDeadline %s: %s", ro.Waves[ro.Wave].Name, deadline, ro.Waiting))
			return
		}
	}
	switch ro.Phase {
	case admin.PhasePending:
		allowed, why := windowsAllow(ro.Policy.Windows, time.Now())
		if !allowed {
			r.setWaiting(ro, why)
			return
		}
		if len(nodes) == 0 && time.Now().Before(r.reconnectUntil) {
			// Right after a restart the fleet has not reconnected yet, and
			// a first wave of nobody would be judged on nothing.
			r.setWaiting(ro, "waiting for proxies to reconnect after a restart")
			return
		}
		r.startWave(ctx, ro, 0, nodes)
	case admin.PhaseProgressing:
		r.checkSynced(ctx, ro, nodes)
	case admin.PhaseBaking:
		r.bake(ctx, ro, nodes)
	}
}

// startWave pushes wave i: its members get the canary (syncFleet does the
// assignment), then the rollout waits for their ACKs.
func (r *Reconciler) startWave(ctx context.Context, ro *rollout, i int, nodes []xds.NodeStatus) {
	waves := effectiveWaves(ro.Policy)
	members := waveMembers(waves[i], nodes, ro.updated)
	var added []string
	for _, id := range members {
		if !ro.updated[id] {
			added = append(added, id)
		}
	}
	r.mu.Lock()
	ro.Wave, ro.Phase = i, admin.PhaseProgressing
	ro.Waves[i].Nodes = added
	ro.Waves[i].StartedAt = time.Now().UTC()
	ro.markUpdated(added)
	ro.waveStarted = time.Now()
	ro.failures, ro.verdict, ro.Readings = 0, "", nil
	ro.Waiting = fmt.Sprintf("%d proxies to ACK %s", len(members), ro.Version)
	r.mu.Unlock()
	r.persist(ro)
	r.log.Info("wave started", "rollout", ro.ID, "wave", ro.Waves[i].Name, "new_proxies", added, "updated", len(ro.Updated))
	r.event(ctx, ro)
	r.syncFleet(ctx)
	r.checkSynced(ctx, ro, connected(r.cfg.Fleet.Nodes()))
}

// checkSynced moves the wave to Baking once every connected updated proxy
// runs the canary, and reads the fleet's metrics at that moment (off the
// loop) as the baseline the analysis measures from.
func (r *Reconciler) checkSynced(ctx context.Context, ro *rollout, nodes []xds.NodeStatus) {
	var pending []string
	present := 0
	for _, n := range nodes {
		if !ro.isUpdated(n.Workload.ID) {
			continue
		}
		present++
		if want := ro.Canary.label(n); want == "" || n.Acked != want {
			pending = append(pending, n.Workload.ID)
		}
	}
	if len(pending) > 0 {
		r.setWaiting(ro, fmt.Sprintf("waiting for %d proxies to ACK %s: %s", len(pending), ro.Version, strings.Join(firstN(pending, 5), ", ")))
		return
	}
	if present == 0 && len(ro.Updated) > 0 {
		// The wave's proxies are all gone (or, after a restart, not back
		// yet): baking a wave of nobody would judge nothing.
		r.setWaiting(ro, fmt.Sprintf("waiting for the wave's %d proxies to connect", len(ro.Updated)))
		return
	}
	bake := effectiveWaves(ro.Policy)[ro.Wave].Bake.Duration
	now := time.Now()
	r.mu.Lock()
	ro.Waves[ro.Wave].SyncedAt = now.UTC()
	ro.Phase = admin.PhaseBaking
	ro.bakeUntil = now.Add(bake)
	ro.lastCheck = now
	ro.bake = bakeState{epoch: ro.bake.epoch + 1}
	ro.Waiting = fmt.Sprintf("baking until %s", ro.bakeUntil.UTC().Format(time.RFC3339))
	r.mu.Unlock()
	r.persist(ro)
	r.log.Info("wave synced; baking", "rollout", ro.ID, "wave", ro.Waves[ro.Wave].Name, "bake", bake)
	r.event(ctx, ro)
	if an := ro.Policy.Analysis.Effective(); len(an.Metrics) > 0 {
		r.readBaseline(ctx, ro, an, nodes)
	}
	r.bake(ctx, ro, nodes)
}

// bakeState is what one wave's bake is waiting for from off-loop work.
// The Run goroutine owns it. epoch tells results of an earlier bake (an
// earlier wave, or the same wave before a pause) from this one's.
type bakeState struct {
	epoch int
	// start is the fleet's metrics when the bake began, by node id; nil
	// until the baseline scrape delivers.
	start map[string]analysis.Sample
	// checking is set while an analysis runs; confirming while the
	// confirm-promotion webhooks are asked.
	checking, confirming bool
	// lastConfirm is when the webhooks were last asked; confirmed is set
	// once they all said yes, and confirmWhy says why not otherwise.
	lastConfirm time.Time
	confirmed   bool
	confirmWhy  string
}

// current reports whether ro is still in the bake of epoch: a result of
// off-loop work is only applied to the bake that asked for it.
func (r *Reconciler) current(ro *rollout, epoch int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rollout == ro && ro.Phase == admin.PhaseBaking && ro.bake.epoch == epoch
}

// readBaseline scrapes every connected proxy off the loop and keeps the
// result as the bake's start; the analysis measures deltas from it.
func (r *Reconciler) readBaseline(ctx context.Context, ro *rollout, an v1alpha1.Analysis, nodes []xds.NodeStatus) {
	epoch := ro.bake.epoch
	timeout := scrapeTimeout(an)
	r.offLoop(ctx, timeout, func(ctx context.Context) func(context.Context) {
		start, err := r.scrape(ctx, nodes)
		return func(ctx context.Context) {
			if err != nil {
				r.log.Warn("scraping proxies at bake start", "error", err)
			}
			if r.current(ro, epoch) {
				ro.bake.start = start
			}
		}
	})
}

// bake runs the analysis every interval while the wave bakes (off the
// loop; bake applies each result when it arrives), rolls back after
// failureThreshold consecutive failed checks, and moves on once the bake
// time is over, the last check passed, and the confirm-promotion webhooks
// agree.
func (r *Reconciler) bake(ctx context.Context, ro *rollout, nodes []xds.NodeStatus) {
	an := ro.Policy.Analysis.Effective()
	now := time.Now()
	if len(an.Metrics) > 0 && ro.bake.start != nil && !ro.bake.checking && now.Sub(ro.lastCheck) >= an.Interval.Duration {
		r.startAnalysis(ctx, ro, an, nodes)
	}
	if now.Before(ro.bakeUntil) {
		r.setWaiting(ro, fmt.Sprintf("baking %s until %s (analysis: %s)", ro.Waves[ro.Wave].Name, ro.bakeUntil.UTC().Format(time.RFC3339), orDash(string(ro.verdict))))
		return
	}
	if bake := effectiveWaves(ro.Policy)[ro.Wave].Bake.Duration; len(an.Metrics) > 0 && bake > 0 && ro.verdict != analysis.Pass {
		r.setWaiting(ro, fmt.Sprintf("bake time over; waiting for a passing analysis (last: %s)", orDash(string(ro.verdict))))
		return
	}
	last := ro.Wave == len(ro.Waves)-1
	if !last && !ro.bake.confirmed && hasWebhook(ro.Policy, v1alpha1.WebhookConfirmPromotion) {
		r.askConfirmation(ctx, ro, an.Interval.Duration)
		why := ro.bake.confirmWhy
		if why == "" {
			why = "asking the confirm-promotion webhooks"
		}
		r.setWaiting(ro, why)
		return
	}
	r.mu.Lock()
	ro.Waves[ro.Wave].BakedAt = time.Now().UTC()
	r.mu.Unlock()
	if last {
		r.promote(ctx, ro)
		return
	}
	r.startWave(ctx, ro, ro.Wave+1, nodes)
}

// startAnalysis scrapes the fleet and runs the checks off the loop, then
// applies the verdict: consecutive failures up to failureThreshold roll
// the rollout back. The whole check is bounded by the analysis interval,
// so a hung scrape target or Prometheus delays a verdict by one interval
// at most (and its reading is inconclusive).
func (r *Reconciler) startAnalysis(ctx context.Context, ro *rollout, an v1alpha1.Analysis, nodes []xds.NodeStatus) {
	epoch, start, updated := ro.bake.epoch, ro.bake.start, maps.Clone(ro.updated)
	ro.bake.checking = true
	ro.lastCheck = time.Now()
	in := analysis.Input{Revision: ro.Revision}
	r.offLoop(ctx, analysisTimeout(an), func(ctx context.Context) func(context.Context) {
		readings := r.analyze(ctx, an, in, nodes, start, updated)
		return func(ctx context.Context) {
			if !r.current(ro, epoch) {
				return
			}
			ro.bake.checking = false
			r.applyVerdict(ctx, ro, an, readings)
		}
	})
}

// applyVerdict records an analysis's readings and rolls back after
// failureThreshold failed checks in a row.
func (r *Reconciler) applyVerdict(ctx context.Context, ro *rollout, an v1alpha1.Analysis, readings []analysis.Reading) {
	verdict := analysis.Verdict(readings)
	r.mu.Lock()
	ro.Readings, ro.verdict = readings, verdict
	switch verdict {
	case analysis.Fail:
		ro.failures++
	case analysis.Pass:
		ro.failures = 0
	}
	failures := ro.failures
	r.mu.Unlock()
	r.metrics.checks.WithLabelValues(string(verdict)).Inc()
	if failures >= int(an.FailureThreshold) {
		r.rollback(ctx, ro, admin.PhaseRolledBack, fmt.Sprintf("analysis failed %d times in a row in %s: %s", failures, ro.Waves[ro.Wave].Name, failedReadings(readings)))
		return
	}
	r.stepRollout(ctx)
}

// analyze scrapes the connected proxies and checks the updated ones (the
// wave) and the rest (the baseline) against the analysis spec. It runs off
// the loop and touches no state: start and updated are its own copies.
func (r *Reconciler) analyze(ctx context.Context, an v1alpha1.Analysis, in analysis.Input, nodes []xds.NodeStatus, start map[string]analysis.Sample, updated map[string]bool) []analysis.Reading {
	sctx, cancel := context.WithTimeout(ctx, scrapeTimeout(an))
	now, err := r.scrape(sctx, nodes)
	cancel()
	if err != nil {
		r.log.Warn("scraping proxies", "error", err)
	}
	for id, s := range now {
		d := s.Sub(start[id])
		if updated[id] {
			in.Wave = in.Wave.Add(d)
			in.WaveNodes = append(in.WaveNodes, id)
		} else {
			in.Baseline = in.Baseline.Add(d)
		}
	}
	sort.Strings(in.WaveNodes)
	return analysis.Check(ctx, an, in, r.prom)
}

// analysisTimeout bounds one analysis: its interval, at least a second.
func analysisTimeout(an v1alpha1.Analysis) time.Duration {
	return max(an.Interval.Duration, time.Second)
}

// scrapeTimeout bounds the scrape of one analysis: half of it, at most 2s,
// leaving the rest for Prometheus queries.
func scrapeTimeout(an v1alpha1.Analysis) time.Duration {
	return min(analysisTimeout(an)/2, 2*time.Second)
}

// scrape reads the request metrics of every connected proxy with an admin
// address, within ctx. A proxy that does not answer in time is missing
// from the result (and named in the error).
func (r *Reconciler) scrape(ctx context.Context, nodes []xds.NodeStatus) (map[string]analysis.Sample, error) {
	addrs := map[string]string{}
	var list []string
	for _, n := range nodes {
		if n.Workload.Admin != "" {
			addrs[n.Workload.Admin] = n.Workload.ID
			list = append(list, n.Workload.Admin)
		}
	}
	byAddr, err := analysis.ScrapeAll(ctx, r.http, list)
	out := make(map[string]analysis.Sample, len(byAddr))
	for a, s := range byAddr {
		out[addrs[a]] = s
	}
	return out, err
}

// promote makes the canary the stable revision: every proxy gets it.
func (r *Reconciler) promote(ctx context.Context, ro *rollout) {
	r.mu.Lock()
	r.stable = ro.Canary
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = ro.Canary.Revision, ro.Canary.Version
	r.mu.Unlock()
	r.saveGood(ro.Canary)
	r.finish(ctx, ro, admin.PhasePromoted, "every wave passed")
	r.syncFleet(ctx)
}

// rollback gives every updated proxy the stable revision again, records
// why, and holds the failed revision until a new commit arrives.
func (r *Reconciler) rollback(ctx context.Context, ro *rollout, phase admin.Phase, reason string) {
	r.log.Warn("rolling back", "rollout", ro.ID, "revision", ro.Revision, "reason", reason)
	r.mu.Lock()
	updated := append([]string(nil), ro.Updated...)
	ro.updated = map[string]bool{}
	r.rollbackWatches = append(r.rollbackWatches, rollbackWatch{started: time.Now(), nodes: updated, revision: ro.Revision})
	failed := &stepError{reason: ReasonRolloutFailed, err: fmt.Errorf("rollout of %s ended %s: %s", ro.Revision, phase, reason)}
	r.status.lastAttemptFailed, r.status.lastErr = failed, failed
	r.status.LastAttemptedRevision = ro.Revision
	r.mu.Unlock()
	r.recordFailure(ro.Revision, failed)
	r.finish(ctx, ro, phase, reason)
	r.syncFleet(ctx)
	r.checkRollbackDone()
	r.webhooks(ctx, ro, v1alpha1.WebhookRollback)
}

// recordFailure persists a failed rollout's revision, so a restarted
// controller does not roll it out again.
func (r *Reconciler) recordFailure(revision string, se *stepError) {
	if r.cfg.Store == nil {
		return
	}
	f := &Failure{Revision: revision, Reason: se.reason, Message: se.err.Error(), Since: time.Now().UTC()}
	if err := r.cfg.Store.SaveFailure(f); err != nil {
		r.log.Warn("saving failed revision", "error", err)
	}
}

// forgetFailure drops the persisted failed revision: a new commit
// arrived, or a person released it.
func (r *Reconciler) forgetFailure() {
	if r.cfg.Store == nil {
		return
	}
	if err := r.cfg.Store.SaveFailure(nil); err != nil {
		r.log.Warn("clearing failed revision", "error", err)
	}
}

// finish ends ro with phase and reason, records it in history and clears
// the in-flight state.
func (r *Reconciler) finish(ctx context.Context, ro *rollout, phase admin.Phase, reason string) {
	r.mu.Lock()
	ro.Phase, ro.Reason, ro.Waiting = phase, reason, ""
	ro.FinishedAt = time.Now().UTC()
	r.mu.Unlock()
	r.metrics.rollouts.WithLabelValues(string(phase)).Inc()
	if err := r.saveRollout(ro); err != nil {
		r.log.Warn("saving rollout", "error", err)
	}
	r.log.Info("rollout finished", "rollout", ro.ID, "revision", ro.Revision, "phase", phase, "reason", reason)
	r.event(ctx, ro)
}

// checkRollbackDone observes, for each rollback in flight, how long it
// took from the decision until every rolled-back proxy that is still
// connected ACKed the stable revision (gitmesh_rollback_duration_seconds).
// It runs on every tick and fleet change while a rollback is watched.
func (r *Reconciler) checkRollbackDone() {
	r.mu.Lock()
	watches, stable := r.rollbackWatches, r.stable
	r.mu.Unlock()
	if len(watches) == 0 || stable == nil {
		return
	}
	acked := map[string]bool{}
	for _, n := range connected(r.cfg.Fleet.Nodes()) {
		acked[n.Workload.ID] = n.Acked != "" && n.Acked == stable.label(n)
	}
	var open []rollbackWatch
	for _, w := range watches {
		done := true
		for _, id := range w.nodes {
			if ok, known := acked[id]; known && !ok {
				done = false
				break
			}
		}
		if !done {
			open = append(open, w)
			continue
		}
		d := time.Since(w.started)
		r.metrics.rollbackSeconds.Observe(d.Seconds())
		r.log.Info("rollback reached every rolled-back proxy", "revision", w.revision, "duration", d.Round(time.Millisecond), "proxies", len(w.nodes))
	}
	r.mu.Lock()
	r.rollbackWatches = open
	r.mu.Unlock()
}

// rollbackWatch tracks a rollback until every rolled-back proxy ACKed the
// stable revision.
type rollbackWatch struct {
	started  time.Time
	nodes    []string
	revision string
}

// nackedNode returns an updated proxy that NACKed the canary.
func nackedNode(ro *rollout, nodes []xds.NodeStatus) (xds.NodeStatus, bool) {
	for _, n := range nodes {
		if ro.isUpdated(n.Workload.ID) && n.NACK != nil && n.NACK.Version == ro.Canary.label(n) {
			return n, true
		}
	}
	return xds.NodeStatus{}, false
}

func (r *Reconciler) setWaiting(ro *rollout, why string) {
	r.mu.Lock()
	ro.Waiting = why
	r.mu.Unlock()
}

// persist saves the in-flight rollout so a restarted controller resumes it.
func (r *Reconciler) persist(ro *rollout) {
	if err := r.saveRollout(ro); err != nil {
		r.log.Warn("saving rollout", "error", err)
	}
}

func failedReadings(rs []analysis.Reading) string {
	var parts []string
	for _, rd := range rs {
		if rd.Result == analysis.Fail {
			parts = append(parts, fmt.Sprintf("%s %s (want %s)", rd.Metric, formatValue(rd), rd.Threshold))
		}
	}
	return strings.Join(parts, "; ")
}

func formatValue(rd analysis.Reading) string {
	return fmt.Sprintf("%.4g%s", rd.Value, rd.Unit)
}

func firstN(ss []string, n int) []string {
	if len(ss) > n {
		return append(ss[:n:n], fmt.Sprintf("+%d more", len(ss)-n))
	}
	return ss
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

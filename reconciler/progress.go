package reconciler

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

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
		r.finish(ctx, prev, PhaseSuperseded, "superseded by "+canary.Revision)
	}
	ro := &Rollout{
		Revision: canary.Revision, Version: canary.Version, PreviousRevision: stableRev,
		Trigger: trigger, Phase: PhasePending, StartedAt: now, Policy: spec, Canary: canary,
		updated: map[string]bool{},
	}
	for i := range effectiveWaves(spec) {
		ro.Waves = append(ro.Waves, WaveRecord{Name: waveName(spec, i)})
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
	if ro.Phase != PhasePending && ro.Phase != PhasePaused {
		if n, ok := nackedNode(ro, nodes); ok {
			r.rollback(ctx, ro, PhaseRolledBack, fmt.Sprintf("proxy %s NACKed %s: %s", n.Workload.ID, ro.Revision, n.NACK.Error))
			return
		}
		if deadline := ro.Policy.EffectiveProgressDeadline(); time.Since(ro.waveStarted) > deadline {
			r.rollback(ctx, ro, PhaseFailed, fmt.Sprintf("%s did not finish within progressDeadline %s: %s", ro.Waves[ro.Wave].Name, deadline, ro.Waiting))
			return
		}
	}
	switch ro.Phase {
	case PhasePending:
		allowed, why := windowsAllow(ro.Policy.Windows, time.Now())
		if !allowed {
			r.setWaiting(ro, why)
			return
		}
		r.startWave(ctx, ro, 0, nodes)
	case PhaseProgressing:
		r.checkSynced(ctx, ro, nodes)
	case PhaseBaking:
		r.bake(ctx, ro, nodes)
	}
}

// startWave pushes wave i: its members get the canary (syncFleet does the
// assignment), then the rollout waits for their ACKs.
func (r *Reconciler) startWave(ctx context.Context, ro *Rollout, i int, nodes []xds.NodeStatus) {
	waves := effectiveWaves(ro.Policy)
	members := waveMembers(waves[i], nodes, ro.updated)
	var added []string
	for _, id := range members {
		if !ro.updated[id] {
			added = append(added, id)
		}
	}
	r.mu.Lock()
	ro.Wave, ro.Phase = i, PhaseProgressing
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
// runs the canary.
func (r *Reconciler) checkSynced(ctx context.Context, ro *Rollout, nodes []xds.NodeStatus) {
	var pending []string
	for _, n := range nodes {
		if !ro.isUpdated(n.Workload.ID) {
			continue
		}
		if want := ro.Canary.label(n); want == "" || n.Acked != want {
			pending = append(pending, n.Workload.ID)
		}
	}
	if len(pending) > 0 {
		r.setWaiting(ro, fmt.Sprintf("waiting for %d proxies to ACK %s: %s", len(pending), ro.Version, strings.Join(firstN(pending, 5), ", ")))
		return
	}
	bake := effectiveWaves(ro.Policy)[ro.Wave].Bake.Duration
	start, err := r.scrape(ctx, nodes)
	if err != nil {
		r.log.Warn("scraping proxies at bake start", "error", err)
	}
	r.mu.Lock()
	ro.Waves[ro.Wave].SyncedAt = time.Now().UTC()
	ro.Phase = PhaseBaking
	ro.bakeUntil = time.Now().Add(bake)
	ro.lastCheck = time.Now()
	ro.start = start
	ro.Waiting = fmt.Sprintf("baking until %s", ro.bakeUntil.UTC().Format(time.RFC3339))
	r.mu.Unlock()
	r.persist(ro)
	r.log.Info("wave synced; baking", "rollout", ro.ID, "wave", ro.Waves[ro.Wave].Name, "bake", bake)
	r.event(ctx, ro)
	r.bake(ctx, ro, nodes)
}

// bake runs the analysis every interval while the wave bakes, rolls back
// after failureThreshold consecutive failed checks, and moves on once the
// bake time is over, the last check passed, and the gates agree.
func (r *Reconciler) bake(ctx context.Context, ro *Rollout, nodes []xds.NodeStatus) {
	an := ro.Policy.Analysis.Effective()
	now := time.Now()
	if len(an.Metrics) > 0 && now.Sub(ro.lastCheck) >= an.Interval.Duration {
		readings := r.analyze(ctx, ro, an, nodes)
		verdict := analysis.Verdict(readings)
		r.mu.Lock()
		ro.lastCheck, ro.Readings, ro.verdict = now, readings, verdict
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
			r.rollback(ctx, ro, PhaseRolledBack, fmt.Sprintf("analysis failed %d times in a row in %s: %s", failures, ro.Waves[ro.Wave].Name, failedReadings(readings)))
			return
		}
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
	if !last {
		if ok, why := r.confirmPromotion(ctx, ro); !ok {
			r.setWaiting(ro, why)
			return
		}
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

// analyze scrapes the updated proxies and the baseline (the rest) and
// checks them against the analysis spec.
func (r *Reconciler) analyze(ctx context.Context, ro *Rollout, an v1alpha1.Analysis, nodes []xds.NodeStatus) []analysis.Reading {
	now, err := r.scrape(ctx, nodes)
	if err != nil {
		r.log.Warn("scraping proxies", "error", err)
	}
	var wave, base analysis.Sample
	var waveIDs []string
	for id, s := range now {
		d := s.Sub(ro.start[id])
		if ro.isUpdated(id) {
			wave = wave.Add(d)
			waveIDs = append(waveIDs, id)
		} else {
			base = base.Add(d)
		}
	}
	sort.Strings(waveIDs)
	in := analysis.Input{Wave: wave, Baseline: base, WaveNodes: waveIDs, Revision: ro.Revision}
	return analysis.Check(ctx, an, in, r.prom)
}

// scrape reads the request metrics of every connected proxy with an admin
// address.
func (r *Reconciler) scrape(ctx context.Context, nodes []xds.NodeStatus) (map[string]analysis.Sample, error) {
	addrs := map[string]string{}
	var list []string
	for _, n := range nodes {
		if n.Workload.Admin != "" {
			addrs[n.Workload.Admin] = n.Workload.ID
			list = append(list, n.Workload.Admin)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	byAddr, err := analysis.ScrapeAll(ctx, r.http, list)
	out := make(map[string]analysis.Sample, len(byAddr))
	for a, s := range byAddr {
		out[addrs[a]] = s
	}
	return out, err
}

// promote makes the canary the stable revision: every proxy gets it.
func (r *Reconciler) promote(ctx context.Context, ro *Rollout) {
	r.mu.Lock()
	r.stable = ro.Canary
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = ro.Canary.Revision, ro.Canary.Version
	r.mu.Unlock()
	r.saveGood(ro.Canary)
	r.finish(ctx, ro, PhasePromoted, "every wave passed")
	r.syncFleet(ctx)
}

// rollback gives every updated proxy the stable revision again, records
// why, and holds the failed revision until a new commit arrives.
func (r *Reconciler) rollback(ctx context.Context, ro *Rollout, phase Phase, reason string) {
	r.log.Warn("rolling back", "rollout", ro.ID, "revision", ro.Revision, "reason", reason)
	r.mu.Lock()
	updated := append([]string(nil), ro.Updated...)
	ro.updated = map[string]bool{}
	r.rollbackWatch = &rollbackWatch{started: time.Now(), nodes: updated}
	failed := &stepError{reason: ReasonRolloutFailed, err: fmt.Errorf("rollout of %s %s: %s", ro.Revision, strings.ToLower(string(phase)), reason)}
	r.status.lastAttemptFailed, r.status.lastErr = failed, failed
	r.status.LastAttemptedRevision = ro.Revision
	r.mu.Unlock()
	r.finish(ctx, ro, phase, reason)
	r.syncFleet(ctx)
	r.webhooks(ctx, ro, v1alpha1.WebhookRollback)
}

// finish ends ro with phase and reason, records it in history and clears
// the in-flight state.
func (r *Reconciler) finish(ctx context.Context, ro *Rollout, phase Phase, reason string) {
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

// checkRollbackDone observes how long the last rollback took to reach
// every rolled-back proxy (all of them ACKed the stable revision).
func (r *Reconciler) checkRollbackDone(nodes []xds.NodeStatus) {
	r.mu.Lock()
	w, stable := r.rollbackWatch, r.stable
	r.mu.Unlock()
	if w == nil || stable == nil {
		return
	}
	in := map[string]bool{}
	for _, id := range w.nodes {
		in[id] = true
	}
	for _, n := range nodes {
		if in[n.Workload.ID] && n.Acked != stable.label(n) {
			return
		}
	}
	d := time.Since(w.started)
	r.metrics.rollbackSeconds.Observe(d.Seconds())
	r.log.Info("rollback reached every rolled-back proxy", "duration", d.Round(time.Millisecond), "proxies", len(w.nodes))
	r.mu.Lock()
	r.rollbackWatch = nil
	r.mu.Unlock()
}

// rollbackWatch tracks a rollback until every rolled-back proxy ACKed.
type rollbackWatch struct {
	started time.Time
	nodes   []string
}

// nackedNode returns an updated proxy that NACKed the canary.
func nackedNode(ro *Rollout, nodes []xds.NodeStatus) (xds.NodeStatus, bool) {
	for _, n := range nodes {
		if ro.isUpdated(n.Workload.ID) && n.NACK != nil && n.NACK.Version == ro.Canary.label(n) {
			return n, true
		}
	}
	return xds.NodeStatus{}, false
}

func (r *Reconciler) setWaiting(ro *Rollout, why string) {
	r.mu.Lock()
	ro.Waiting = why
	r.mu.Unlock()
}

// persist saves the in-flight rollout so a restarted controller resumes it.
func (r *Reconciler) persist(ro *Rollout) {
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

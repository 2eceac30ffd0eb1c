package reconciler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/xds"
)

// command is an admin.Request on its way to the Run goroutine.
type command struct {
	req   admin.Request
	reply chan admin.Response
}

// Do runs req in the Run goroutine (which owns the rollout) and returns its
// result. It fails with ctx's error when Run does not take it in time.
func (r *Reconciler) Do(ctx context.Context, req admin.Request) (admin.Response, error) {
	c := command{req: req, reply: make(chan admin.Response, 1)}
	select {
	case r.commands <- c:
	case <-ctx.Done():
		return admin.Response{}, fmt.Errorf("%s: controller busy: %w", req.Op, ctx.Err())
	}
	select {
	case res := <-c.reply:
		return res, nil
	case <-ctx.Done():
		return admin.Response{}, fmt.Errorf("%s: %w", req.Op, ctx.Err())
	}
}

// execute runs one command; called from the Run goroutine only.
func (r *Reconciler) execute(ctx context.Context, c command) admin.Response {
	defer r.refreshReady()
	r.mu.Lock()
	ro := r.rollout
	r.mu.Unlock()
	inFlight := ro != nil && !ro.Phase.Done()
	switch c.req.Op {
	case admin.OpPromote:
		if !inFlight {
			return admin.Response{Message: "no rollout in flight", Code: http.StatusConflict}
		}
		if ro.Phase == admin.PhasePending && !c.req.Full {
			r.startWave(ctx, ro, 0, connected(r.cfg.Fleet.Nodes()))
			return admin.Response{Message: fmt.Sprintf("started %s of %s despite its windows", ro.Waves[0].Name, ro.Revision), Code: http.StatusOK}
		}
		if c.req.Full || ro.Wave == len(ro.Waves)-1 {
			r.promote(ctx, ro)
			return admin.Response{Message: fmt.Sprintf("promoted %s to every proxy", ro.Revision), Code: http.StatusOK}
		}
		r.mu.Lock()
		ro.Waves[ro.Wave].BakedAt = time.Now().UTC()
		ro.Phase = admin.PhaseProgressing
		r.mu.Unlock()
		r.startWave(ctx, ro, ro.Wave+1, connected(r.cfg.Fleet.Nodes()))
		return admin.Response{Message: fmt.Sprintf("started %s of %s", ro.Waves[ro.Wave].Name, ro.Revision), Code: http.StatusOK}
	case admin.OpAbort:
		if !inFlight {
			return admin.Response{Message: "no rollout in flight", Code: http.StatusConflict}
		}
		r.rollback(ctx, ro, admin.PhaseAborted, "aborted by a person ('gitmesh abort')")
		return admin.Response{Message: fmt.Sprintf("aborted %s; every proxy is back on %s", ro.Revision, ro.PreviousRevision), Code: http.StatusOK}
	case admin.OpPause:
		if !inFlight {
			return admin.Response{Message: "no rollout in flight", Code: http.StatusConflict}
		}
		if ro.Phase == admin.PhasePaused {
			return admin.Response{Message: fmt.Sprintf("rollout #%d of %s is already paused at %s; 'gitmesh resume' continues it", ro.ID, ro.Revision, ro.Waves[ro.Wave].Name), Code: http.StatusConflict}
		}
		r.mu.Lock()
		ro.PausedFrom, ro.Phase, ro.Waiting = ro.Phase, admin.PhasePaused, "paused by a person; 'gitmesh resume' continues"
		r.mu.Unlock()
		r.persist(ro)
		r.event(ctx, ro)
		return admin.Response{Message: fmt.Sprintf("paused %s at %s", ro.Revision, ro.Waves[ro.Wave].Name), Code: http.StatusOK}
	case admin.OpResume:
		if inFlight && ro.Phase == admin.PhasePaused {
			r.mu.Lock()
			ro.Phase, ro.PausedFrom = ro.PausedFrom, ""
			ro.waveStarted = time.Now()
			if ro.Phase == admin.PhaseBaking {
				ro.Phase = admin.PhaseProgressing // bake afresh
			}
			r.mu.Unlock()
			r.persist(ro)
			r.event(ctx, ro)
			r.stepRollout(ctx)
			return admin.Response{Message: fmt.Sprintf("resumed %s", ro.Revision), Code: http.StatusOK}
		}
		r.mu.Lock()
		held := r.hold != nil
		var failed *stepError
		if errors.As(r.status.lastAttemptFailed, &failed) && failed.reason != ReasonRolloutFailed {
			failed = nil // a build or validation failure is retried by a new commit only
		}
		failedRev := r.status.LastAttemptedRevision
		r.mu.Unlock()
		switch {
		case held:
			r.release()
		case failed != nil:
			r.log.Info("failed revision released", "revision", failedRev)
		default:
			return admin.Response{Message: "nothing paused or held", Code: http.StatusConflict}
		}
		r.mu.Lock()
		// LastAttemptedRevision stays what it is (status shows it); without
		// a recorded failure the next fetch builds and applies it again.
		r.status.lastAttemptFailed = nil
		r.mu.Unlock()
		r.forgetFailure()
		r.Trigger()
		if held {
			return admin.Response{Message: "released the hold; the newest revision will be rolled out", Code: http.StatusOK}
		}
		return admin.Response{Message: fmt.Sprintf("released %s, whose rollout failed; it will be rolled out again", failedRev), Code: http.StatusOK}
	case admin.OpRollback:
		return r.manualRollback(ctx, c.req.To)
	}
	return admin.Response{Message: fmt.Sprintf("unknown operation %q", c.req.Op), Code: http.StatusBadRequest}
}

// manualRollback moves every proxy to a previously promoted revision at
// once (no waves: this is the emergency path) and holds it there.
func (r *Reconciler) manualRollback(ctx context.Context, to string) admin.Response {
	r.mu.Lock()
	ro, stable := r.rollout, r.stable
	head := r.status.LastAttemptedRevision
	r.mu.Unlock()
	if stable == nil {
		return admin.Response{Message: "nothing has been served yet", Code: http.StatusConflict}
	}
	if to == "" && ro != nil && !ro.Phase.Done() {
		r.rollback(ctx, ro, admin.PhaseAborted, "rolled back by a person ('gitmesh rollback'); held on "+stable.Revision)
		r.setHold(&admin.Hold{Revision: stable.Revision, Head: head, Since: time.Now().UTC()})
		return admin.Response{Message: fmt.Sprintf("rolled back %s; every proxy is back on %s (held)", ro.Revision, stable.Revision), Code: http.StatusOK}
	}
	target, matched, err := r.findGood(to, stable.Revision)
	if err != nil {
		return admin.Response{Message: err.Error(), Code: http.StatusNotFound}
	}
	cand, err := r.parseStored(target.Revision, target.Objects, stable.jwks)
	if err != nil {
		return admin.Response{Message: err.Error(), Code: http.StatusConflict}
	}
	nodes := connected(r.cfg.Fleet.Nodes())
	if err := cand.compile(nodes, workloads(nodes), r.probe()); err != nil {
		return admin.Response{Message: err.Error(), Code: http.StatusConflict}
	}
	if ro != nil && !ro.Phase.Done() {
		r.finish(ctx, ro, admin.PhaseSuperseded, "superseded by a manual rollback to "+cand.Revision)
	}
	now := time.Now().UTC()
	rec := &rollout{Rollout: admin.Rollout{Revision: cand.Revision, Version: cand.Version, PreviousRevision: stable.Revision, Trigger: admin.TriggerRollback, Phase: admin.PhaseManualRollback, Reason: "rolled the fleet back from " + stable.Revision, StartedAt: now, FinishedAt: now}}
	if err := r.saveRollout(rec); err != nil {
		r.log.Warn("saving rollout", "error", err)
	}
	r.mu.Lock()
	r.stable, r.rollout = cand, rec
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = cand.Revision, cand.Version
	r.rollbackWatches = append(r.rollbackWatches, rollbackWatch{started: time.Now(), nodes: nodeIDs(nodes), revision: stable.Revision})
	r.mu.Unlock()
	r.saveGood(cand)
	r.setHold(&admin.Hold{Revision: cand.Revision, Head: head, Since: now})
	r.metrics.rollouts.WithLabelValues(string(admin.PhaseManualRollback)).Inc()
	r.metrics.setPhase(admin.PhaseManualRollback)
	r.syncFleet(ctx)
	r.startJWKSRefresh(ctx, r.cfg.JWKSRefresh) // its jwksUri may differ from the stable's
	r.log.Warn("manual rollback", "revision", cand.Revision, "from", stable.Revision)
	return admin.Response{Message: fmt.Sprintf("rolled the fleet back to %s (%s; held until a new commit or 'gitmesh resume')", cand.Revision, matched), Code: http.StatusOK}
}

// findGood finds a promoted revision by history id ("4" or "#4"), full
// revision, SHA or unique SHA prefix; with to empty, the one promoted
// before current. It says what to matched, for the answer.
func (r *Reconciler) findGood(to, current string) (*LastGood, string, error) {
	if r.cfg.Store == nil {
		return nil, "", errors.New("no state store: rollback needs --state-dir")
	}
	goods, err := r.cfg.Store.GoodRevisions()
	if err != nil {
		return nil, "", err
	}
	if to == "" {
		sort.Slice(goods, func(i, j int) bool { return goods[i].AppliedAt.After(goods[j].AppliedAt) })
		for i := range goods {
			if goods[i].Revision != current {
				return &goods[i], "the revision promoted before " + current, nil
			}
		}
		return nil, "", errors.New("no earlier good revision to roll back to")
	}
	byID, err := r.historyRecord(to)
	if err != nil {
		return nil, "", err
	}
	var found []*LastGood
	for i := range goods {
		if MatchesRevision(goods[i].Revision, to) {
			found = append(found, &goods[i])
		}
	}
	if byID != nil {
		if len(found) > 0 && found[0].Revision != byID.Revision {
			return nil, "", fmt.Errorf("%q is ambiguous: it is history #%d (%s) and a prefix of %s; use '#%d' or more of the SHA", to, byID.ID, byID.Revision, found[0].Revision, byID.ID)
		}
		for i := range goods {
			if goods[i].Revision == byID.Revision {
				return &goods[i], fmt.Sprintf("history #%d", byID.ID), nil
			}
		}
		return nil, "", fmt.Errorf("history #%d is %s, which was never promoted (%s); only promoted revisions can be rolled back to", byID.ID, byID.Revision, byID.Phase)
	}
	switch len(found) {
	case 0:
		return nil, "", fmt.Errorf("%q is neither a history id nor a promoted revision (only promoted revisions can be rolled back to; see 'gitmesh history')", to)
	case 1:
		if found[0].Revision == to {
			return found[0], "revision", nil
		}
		return found[0], "SHA prefix " + to, nil
	}
	return nil, "", fmt.Errorf("revision %q is ambiguous: it matches %d promoted revisions", to, len(found))
}

// MatchesRevision reports whether rev ("main@sha1:<hex>") is want: the
// same revision, or want is its SHA or a prefix of it (at least 4 hex).
func MatchesRevision(rev, want string) bool {
	if rev == "" {
		return false
	}
	if rev == want {
		return true
	}
	_, sha, _ := strings.Cut(rev, "sha1:")
	want = strings.TrimPrefix(want, "sha1:")
	return len(want) >= 4 && strings.HasPrefix(sha, want)
}

// historyRecord returns the history record whose id is to ("4" or "#4"),
// nil when to is not a number or no record has that id.
func (r *Reconciler) historyRecord(to string) (*admin.Rollout, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(to, "#"), 10, 64)
	if err != nil || id == 0 {
		return nil, nil
	}
	h, err := r.cfg.Store.History(0)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	for i := range h {
		if h[i].ID == id {
			return &h[i], nil
		}
	}
	return nil, nil
}

// setHold records a hold.
func (r *Reconciler) setHold(h *admin.Hold) {
	r.mu.Lock()
	r.hold = h
	r.mu.Unlock()
	if r.cfg.Store != nil {
		if err := r.cfg.Store.SaveHold(h); err != nil {
			r.log.Warn("saving hold", "error", err)
		}
	}
}

// release clears the hold.
func (r *Reconciler) release() {
	r.setHold(nil)
	r.log.Info("hold released")
}

func nodeIDs(nodes []xds.NodeStatus) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Workload.ID
	}
	return out
}

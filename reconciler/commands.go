package reconciler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/xds"
)

// Operations a person can ask of the rollout (admin API, CLI).
const (
	OpPromote  = "promote"
	OpAbort    = "abort"
	OpPause    = "pause"
	OpResume   = "resume"
	OpRollback = "rollback"
)

// Request is a manual operation on the rollout.
type Request struct {
	// Op is promote, abort, pause, resume or rollback.
	Op string `json:"op"`
	// Full (promote) skips every remaining wave.
	Full bool `json:"full,omitempty"`
	// To (rollback) names a previously promoted revision: a full revision,
	// a commit SHA or a unique SHA prefix. Default: the last good revision
	// (aborting an in-flight rollout), or, with none in flight, the one
	// promoted before it.
	To string `json:"to,omitempty"`
}

// Result answers a Request.
type Result struct {
	Message string `json:"message"`
	// Code is the HTTP status the admin API answers with.
	Code int `json:"-"`
}

// command is a Request on its way to the Run goroutine.
type command struct {
	req   Request
	reply chan Result
}

// Do runs req in the Run goroutine (which owns the rollout) and returns its
// result. It fails with ctx's error when Run does not take it in time.
func (r *Reconciler) Do(ctx context.Context, req Request) (Result, error) {
	c := command{req: req, reply: make(chan Result, 1)}
	select {
	case r.commands <- c:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%s: controller busy: %w", req.Op, ctx.Err())
	}
	select {
	case res := <-c.reply:
		return res, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%s: %w", req.Op, ctx.Err())
	}
}

// execute runs one command; called from the Run goroutine only.
func (r *Reconciler) execute(ctx context.Context, c command) Result {
	defer r.refreshReady()
	r.mu.Lock()
	ro := r.rollout
	r.mu.Unlock()
	inFlight := ro != nil && !ro.Phase.Done()
	switch c.req.Op {
	case OpPromote:
		if !inFlight {
			return Result{"no rollout in flight", http.StatusConflict}
		}
		if ro.Phase == PhasePending && !c.req.Full {
			r.startWave(ctx, ro, 0, connected(r.cfg.Fleet.Nodes()))
			return Result{fmt.Sprintf("started %s of %s despite its windows", ro.Waves[0].Name, ro.Revision), http.StatusOK}
		}
		if c.req.Full || ro.Wave == len(ro.Waves)-1 {
			r.promote(ctx, ro)
			return Result{fmt.Sprintf("promoted %s to every proxy", ro.Revision), http.StatusOK}
		}
		r.mu.Lock()
		ro.Waves[ro.Wave].BakedAt = time.Now().UTC()
		ro.Phase = PhaseProgressing
		r.mu.Unlock()
		r.startWave(ctx, ro, ro.Wave+1, connected(r.cfg.Fleet.Nodes()))
		return Result{fmt.Sprintf("started %s of %s", ro.Waves[ro.Wave].Name, ro.Revision), http.StatusOK}
	case OpAbort:
		if !inFlight {
			return Result{"no rollout in flight", http.StatusConflict}
		}
		r.rollback(ctx, ro, PhaseRolledBack, "aborted by a person")
		return Result{fmt.Sprintf("aborted %s; every proxy is back on %s", ro.Revision, ro.PreviousRevision), http.StatusOK}
	case OpPause:
		if !inFlight || ro.Phase == PhasePaused {
			return Result{"no running rollout to pause", http.StatusConflict}
		}
		r.mu.Lock()
		ro.PausedFrom, ro.Phase, ro.Waiting = ro.Phase, PhasePaused, "paused by a person; 'gitmesh resume' continues"
		r.mu.Unlock()
		r.persist(ro)
		r.event(ctx, ro)
		return Result{fmt.Sprintf("paused %s at %s", ro.Revision, ro.Waves[ro.Wave].Name), http.StatusOK}
	case OpResume:
		if inFlight && ro.Phase == PhasePaused {
			r.mu.Lock()
			ro.Phase, ro.PausedFrom = ro.PausedFrom, ""
			ro.waveStarted = time.Now()
			if ro.Phase == PhaseBaking {
				ro.Phase = PhaseProgressing // bake afresh
			}
			r.mu.Unlock()
			r.persist(ro)
			r.event(ctx, ro)
			r.stepRollout(ctx)
			return Result{fmt.Sprintf("resumed %s", ro.Revision), http.StatusOK}
		}
		r.mu.Lock()
		held := r.hold != nil
		r.mu.Unlock()
		if held {
			r.release()
			r.mu.Lock()
			r.status.LastAttemptedRevision, r.status.lastAttemptFailed = "", nil
			r.mu.Unlock()
			r.Trigger()
			return Result{"released the hold; the newest revision will be rolled out", http.StatusOK}
		}
		return Result{"nothing paused or held", http.StatusConflict}
	case OpRollback:
		return r.manualRollback(ctx, c.req.To)
	}
	return Result{fmt.Sprintf("unknown operation %q", c.req.Op), http.StatusBadRequest}
}

// manualRollback moves every proxy to a previously promoted revision at
// once (no waves: this is the emergency path) and holds it there.
func (r *Reconciler) manualRollback(ctx context.Context, to string) Result {
	r.mu.Lock()
	ro, stable := r.rollout, r.stable
	head := r.status.LastAttemptedRevision
	r.mu.Unlock()
	if stable == nil {
		return Result{"nothing has been served yet", http.StatusConflict}
	}
	if to == "" && ro != nil && !ro.Phase.Done() {
		r.rollback(ctx, ro, PhaseRolledBack, "rolled back by a person")
		r.setHold(&Hold{Revision: stable.Revision, Head: head, Since: time.Now().UTC()})
		return Result{fmt.Sprintf("rolled back %s; every proxy is back on %s (held)", ro.Revision, stable.Revision), http.StatusOK}
	}
	target, err := r.findGood(to, stable.Revision)
	if err != nil {
		return Result{err.Error(), http.StatusNotFound}
	}
	cand, err := r.parseStored(target.Revision, target.Objects)
	if err != nil {
		return Result{err.Error(), http.StatusConflict}
	}
	nodes := connected(r.cfg.Fleet.Nodes())
	if err := cand.compile(nodes, workloads(nodes), r.probe()); err != nil {
		return Result{err.Error(), http.StatusConflict}
	}
	if ro != nil && !ro.Phase.Done() {
		r.finish(ctx, ro, PhaseSuperseded, "superseded by a manual rollback to "+cand.Revision)
	}
	now := time.Now().UTC()
	rec := &Rollout{Revision: cand.Revision, Version: cand.Version, PreviousRevision: stable.Revision, Trigger: TriggerRollback, Phase: PhasePromoted, Reason: "manual rollback", StartedAt: now, FinishedAt: now}
	if err := r.saveRollout(rec); err != nil {
		r.log.Warn("saving rollout", "error", err)
	}
	r.mu.Lock()
	r.stable, r.rollout = cand, rec
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = cand.Revision, cand.Version
	r.rollbackWatch = &rollbackWatch{started: time.Now(), nodes: nodeIDs(nodes)}
	r.mu.Unlock()
	r.saveGood(cand)
	r.setHold(&Hold{Revision: cand.Revision, Head: head, Since: now})
	r.metrics.rollouts.WithLabelValues("ManualRollback").Inc()
	r.syncFleet(ctx)
	r.log.Warn("manual rollback", "revision", cand.Revision, "from", stable.Revision)
	return Result{fmt.Sprintf("rolled the fleet back to %s (held until a new commit or 'gitmesh resume')", cand.Revision), http.StatusOK}
}

// findGood finds a promoted revision by full revision, SHA or unique SHA
// prefix; with to empty, the one promoted before current.
func (r *Reconciler) findGood(to, current string) (*LastGood, error) {
	if r.cfg.Store == nil {
		return nil, errors.New("no state store: rollback needs --state-dir")
	}
	goods, err := r.cfg.Store.GoodRevisions()
	if err != nil {
		return nil, err
	}
	if to == "" {
		sort.Slice(goods, func(i, j int) bool { return goods[i].AppliedAt.After(goods[j].AppliedAt) })
		for i := range goods {
			if goods[i].Revision != current {
				return &goods[i], nil
			}
		}
		return nil, errors.New("no earlier good revision to roll back to")
	}
	var found []*LastGood
	for i := range goods {
		rev := goods[i].Revision
		_, sha, _ := strings.Cut(rev, "sha1:")
		if rev == to || (len(to) >= 4 && strings.HasPrefix(sha, strings.TrimPrefix(to, "sha1:"))) {
			found = append(found, &goods[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("revision %q was never promoted (only promoted revisions can be rolled back to; see 'gitmesh history')", to)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("revision %q is ambiguous: it matches %d promoted revisions", to, len(found))
}

// setHold records a hold.
func (r *Reconciler) setHold(h *Hold) {
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

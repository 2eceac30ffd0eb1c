package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// The Run goroutine only decides; it never waits on the network. Every
// fetch, scrape, Prometheus query and webhook call runs in a goroutine of
// its own under a deadline (offLoop), and its result comes back to Run as
// a function that Run calls in its next turn. Admin commands, NACKs,
// progress deadlines and rollbacks are therefore handled within one tick
// whatever the I/O is doing.

// offLoop runs work in a new goroutine with a context that is done after
// timeout (or when ctx is), and hands the function work returns to the Run
// goroutine, which calls it with Run's context. The returned function must
// check that what it decides about still holds (the rollout, its wave):
// the world may have moved on while work ran. A nil function is dropped.
func (r *Reconciler) offLoop(ctx context.Context, timeout time.Duration, work func(ctx context.Context) func(context.Context)) {
	r.jobs.Add(1)
	go func() {
		defer r.jobs.Done()
		jctx, cancel := context.WithTimeout(ctx, timeout)
		done := work(jctx)
		cancel()
		if done == nil {
			return
		}
		select {
		case r.results <- done:
		case <-ctx.Done():
		}
	}()
}

// fetchState is the Run goroutine's view of the source fetch; only Run
// reads or writes it.
type fetchState struct {
	// inFlight is set while a fetch (and its build) runs.
	inFlight bool
	// again is set when a trigger arrived during the fetch in flight: one
	// more fetch follows it, so a push announced mid-fetch is not missed.
	again bool
}

// fetched is what a fetch delivers to the Run goroutine.
type fetched struct {
	start time.Time
	art   *sources.Artifact
	// cand is the built and parsed revision, nil when the fetch failed, the
	// build failed, or the revision needed no build (see known).
	cand *served
	// diags are the parse diagnostics of a built revision (also a failed one).
	diags compiler.Diagnostics
	err   error
}

// startFetch fetches the source, then builds and parses what it got, off
// the Run goroutine, bounded by FetchTimeout. A fetch in flight is never
// duplicated: a trigger that arrives meanwhile makes one more fetch follow
// it. Called from the Run goroutine only.
func (r *Reconciler) startFetch(ctx context.Context) {
	if r.fetch.inFlight {
		r.fetch.again = true
		return
	}
	r.fetch.inFlight, r.fetch.again = true, false
	skip := r.knownRevisions()
	timeout := r.cfg.FetchTimeout
	r.offLoop(ctx, timeout, func(ctx context.Context) func(context.Context) {
		f := fetched{start: time.Now()}
		f.art, f.err = r.cfg.Source.Fetch(ctx)
		if f.err != nil {
			if errors.Is(f.err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				f.err = fmt.Errorf("fetch timed out after %s (--timeout): %w", timeout, f.err)
			}
			f.err = &stepError{reasonFor(f.err, ReasonFetchFailed), fmt.Errorf("fetching source: %w", f.err)}
		} else if !skip[f.art.Revision] {
			f.cand, f.diags, f.err = r.buildAndParse(ctx, f.art)
		}
		return func(ctx context.Context) { r.fetchDone(ctx, f) }
	})
}

// fetchDone takes a fetch's result in the Run goroutine: it decides what
// to do with the revision, records the outcome in the status, and starts
// the follow-up fetch a trigger asked for.
func (r *Reconciler) fetchDone(ctx context.Context, f fetched) {
	r.fetch.inFlight = false
	err := r.reconcile(ctx, f)
	r.metrics.observe(err, time.Since(f.start))
	var se *stepError
	if err != nil && !errors.As(err, &se) {
		se = &stepError{ReasonFailed, err}
		err = se
	}
	r.mu.Lock()
	r.status.LastReconcileTime = f.start.UTC()
	changed := r.status.lastErr == nil || err == nil || r.status.lastErr.Error() != err.Error()
	r.status.lastErr = err
	r.mu.Unlock()
	if err != nil && changed {
		r.log.Error("reconcile failed", "reason", se.reason, "error", err)
		if r.cfg.Recorder != nil {
			rev := ""
			if f.art != nil {
				rev = f.art.Revision
			}
			r.cfg.Recorder.ReconcileFailed(rev, se.reason, err.Error())
		}
	}
	r.refreshReady()
	if r.fetch.again {
		r.startFetch(ctx)
	}
}

// knownRevisions lists the revisions a fetch need not build: the stable
// one, the one rolling out, the held ones and the last failed one. The
// Run goroutine decides again on the result (see reconcile).
func (r *Reconciler) knownRevisions() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	known := map[string]bool{}
	if r.stable != nil {
		known[r.stable.Revision] = true
	}
	if r.rollout != nil && !r.rollout.Phase.Done() {
		known[r.rollout.Revision] = true
	}
	if r.hold != nil {
		known[r.hold.Head], known[r.hold.Revision] = true, true
	}
	if r.status.lastAttemptFailed != nil {
		known[r.status.LastAttemptedRevision] = true
	}
	return known
}

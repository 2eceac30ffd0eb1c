package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// Ready condition reasons. They are stable: scripts and alerts match on them.
const (
	ReasonSucceeded        = meta.SucceededReason
	ReasonFetchFailed      = "FetchFailed"
	ReasonBuildFailed      = meta.BuildFailedReason
	ReasonValidationFailed = "ValidationFailed"
	ReasonCompileFailed    = "CompileFailed"
	ReasonRolloutFailed    = "RolloutFailed"
	ReasonProgressing      = meta.ProgressingReason
	ReasonHeld             = "Held"
)

// stepError is a failed step: the Ready reason it sets and why.
type stepError struct {
	reason string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// reconcileOnce runs one pass of the loop (from the Run goroutine only): fetch, build, validate, compile,
// then start a rollout of the result. Each step either passes its result on
// or returns a stepError; the Ready condition is computed once, at the end.
// A failed revision is not retried until the source moves to another one.
func (r *Reconciler) reconcileOnce(ctx context.Context) {
	start := time.Now()
	err := r.reconcile(ctx)
	r.metrics.observe(err, time.Since(start))
	var se *stepError
	if err != nil && !errors.As(err, &se) {
		err = &stepError{meta.FailedReason, err}
	}
	r.mu.Lock()
	r.status.LastReconcileTime = start.UTC()
	changed := r.status.lastErr == nil || err == nil || r.status.lastErr.Error() != err.Error()
	r.status.lastErr = err
	r.mu.Unlock()
	if err != nil && changed {
		r.log.Error("reconcile failed", "reason", err.(*stepError).reason, "error", err)
	}
	r.refreshReady()
}

// reconcile runs the steps in order and returns the first failure.
func (r *Reconciler) reconcile(ctx context.Context) error {
	art, err := r.cfg.Source.Fetch(ctx)
	if err != nil {
		return &stepError{ReasonFetchFailed, fmt.Errorf("fetching source: %w", err)}
	}
	r.mu.Lock()
	stable, ro, hold := r.stable, r.rollout, r.hold
	lastAttempt, lastFailed := r.status.LastAttemptedRevision, r.status.lastAttemptFailed
	r.mu.Unlock()
	if hold != nil {
		if art.Revision == hold.Head || art.Revision == hold.Revision {
			return nil // held by a manual rollback until a new commit or resume
		}
		r.release()
	}
	if stable != nil && stable.Revision == art.Revision {
		return nil // already serving it
	}
	if ro != nil && !ro.Phase.Done() && ro.Revision == art.Revision {
		return nil // rolling it out
	}
	if art.Revision == lastAttempt && lastFailed != nil {
		return lastFailed // recorded failure; wait for a new commit
	}

	r.mu.Lock()
	r.status.LastAttemptedRevision = art.Revision
	r.status.lastAttemptFailed = nil
	r.status.Diagnostics = nil
	r.mu.Unlock()
	r.log.Info("new revision", "revision", art.Revision)

	cand, err := r.buildAndValidate(art)
	if err == nil {
		err = r.apply(ctx, cand)
	}
	var se *stepError
	if errors.As(err, &se) {
		r.mu.Lock()
		r.status.lastAttemptFailed = se
		r.mu.Unlock()
	}
	return err
}

// buildAndValidate builds the artifact into Objects and parses them into a
// Policy. It fails with BuildFailed or ValidationFailed and records the
// diagnostics in the status either way.
func (r *Reconciler) buildAndValidate(art *sources.Artifact) (*served, error) {
	objs, problems, err := r.cfg.Build(art.Dir, r.cfg.Path)
	if err != nil {
		return nil, &stepError{ReasonBuildFailed, fmt.Errorf("building %s: %w", art.Revision, err)}
	}
	policy, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(r.cfg.DefaultNamespace), compiler.WithProblems(problems))
	r.mu.Lock()
	r.status.Diagnostics = diags
	r.mu.Unlock()
	if diags.HasErrors() {
		return nil, &stepError{ReasonValidationFailed, fmt.Errorf("validating %s: %s", art.Revision, summarizeDiagnostics(diags))}
	}
	return newServed(art.Revision, objs, policy), nil
}

// apply compiles cand for every connected proxy class (and a probe class,
// so a policy that compiles for no connected proxy still fails here), then
// hands it to a rollout, unless it compiles to exactly what is served.
func (r *Reconciler) apply(ctx context.Context, cand *served) error {
	nodes := connected(r.cfg.Fleet.Nodes())
	fleet := workloads(nodes)
	if err := cand.compile(nodes, fleet, r.probe()); err != nil {
		return &stepError{ReasonCompileFailed, err}
	}
	r.mu.Lock()
	stable := r.stable
	r.mu.Unlock()
	if stable == nil {
		// The first revision: nothing to roll back to, so every proxy gets
		// it at once (as Flagger initializes a new canary).
		r.adopt(ctx, cand, "initial revision", true)
		return nil
	}
	if err := stable.compile(nodes, fleet, r.probe()); err != nil {
		return &stepError{ReasonCompileFailed, fmt.Errorf("compiling the stable revision for comparison: %w", err)}
	}
	summary := diffServed(stable, cand)
	r.log.Info("compiled revision", "revision", cand.Revision, "version", cand.Version, "changes", summary.String())
	if summary.Empty() {
		r.adopt(ctx, cand, "no compiled change", false)
		return nil
	}
	r.startRollout(ctx, cand, rolloutSpec(stable), TriggerCommit)
	return nil
}

// rolloutSpec is the RolloutPolicy in force: the one in the stable (last
// good) revision, so a committed RolloutPolicy governs every later push,
// and a commit cannot loosen the gates (or lift a change freeze) that
// judge it. v1alpha1.Default applies when the stable revision has none.
func rolloutSpec(stable *served) v1alpha1.RolloutPolicySpec {
	if rp := stable.Policy.RolloutPolicy(); rp != nil {
		return rp.Spec
	}
	return v1alpha1.Default().Spec
}

// adopt makes s the stable revision without a rollout: the first revision,
// or one that compiles to what is served already (nothing is pushed then).
func (r *Reconciler) adopt(ctx context.Context, s *served, why string, record bool) {
	r.mu.Lock()
	r.stable = s
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = s.Revision, s.Version
	r.mu.Unlock()
	r.saveGood(s)
	r.log.Info("serving revision", "revision", s.Revision, "version", s.Version, "why", why)
	if record {
		now := time.Now().UTC()
		ro := &Rollout{Revision: s.Revision, Version: s.Version, Trigger: TriggerInitial, Phase: PhasePromoted, Reason: why, StartedAt: now, FinishedAt: now}
		if err := r.saveRollout(ro); err != nil {
			r.log.Warn("saving rollout", "error", err)
		}
		r.metrics.rollouts.WithLabelValues(string(PhasePromoted)).Inc()
	}
	r.syncFleet(ctx)
}

// refreshReady computes the Ready condition from the last reconcile error,
// the in-flight rollout and the hold.
func (r *Reconciler) refreshReady() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var se *stepError
	switch {
	case errors.As(r.status.lastErr, &se):
		r.status.markFailed(se.reason, se.err.Error())
	case r.rollout != nil && !r.rollout.Phase.Done():
		ro := r.rollout
		r.status.markProgressing(fmt.Sprintf("rolling out %s: %s, wave %d/%d: %s", ro.Revision, ro.Phase, ro.Wave+1, len(ro.Waves), ro.Waiting))
	case r.hold != nil:
		r.status.markHeld(fmt.Sprintf("held at %s by a manual rollback; a new commit or 'gitmesh resume' releases it", r.hold.Revision))
	default:
		r.status.markReady(r.status.LastAppliedRevision, r.status.LastAppliedVersion)
	}
	r.metrics.ready.Set(boolGauge(r.status.lastErr == nil))
}

// summarizeDiagnostics renders the errors among diags, at most five.
func summarizeDiagnostics(diags compiler.Diagnostics) string {
	var errs []string
	for _, d := range diags {
		if d.Severity == compiler.SeverityError {
			errs = append(errs, d.String())
		}
	}
	sort.Strings(errs)
	n := len(errs)
	if n > 5 {
		errs = append(errs[:5], fmt.Sprintf("... and %d more", n-5))
	}
	return fmt.Sprintf("%d error(s): %s", n, strings.Join(errs, "; "))
}

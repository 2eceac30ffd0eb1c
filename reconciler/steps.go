package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"

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
	ReasonProgressing      = meta.ProgressingReason
)

// stepError is a failed step: the Ready reason it sets and why.
type stepError struct {
	reason string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// ReconcileOnce runs one pass of the loop: fetch, build, validate, compile,
// apply. Each step either passes its result on or returns a stepError; the
// Ready condition is computed once, at the end, from the outcome. A failed
// revision is not retried until the source moves to another revision.
func (r *Reconciler) ReconcileOnce(ctx context.Context) {
	start := time.Now()
	err := r.reconcile(ctx)
	r.metrics.observe(err, time.Since(start))

	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.LastReconcileTime = start.UTC()
	var se *stepError
	switch {
	case err == nil:
		r.status.markReady(r.status.LastAppliedRevision, r.status.LastAppliedVersion)
	case errors.As(err, &se):
		r.status.markFailed(se.reason, se.err.Error())
		r.log.Error("reconcile failed", "reason", se.reason, "error", se.err)
	default:
		r.status.markFailed(meta.FailedReason, err.Error())
		r.log.Error("reconcile failed", "error", err)
	}
	r.metrics.ready.Set(boolGauge(err == nil))
}

// reconcile runs the steps in order and returns the first failure.
func (r *Reconciler) reconcile(ctx context.Context) error {
	art, err := r.cfg.Source.Fetch(ctx)
	if err != nil {
		return &stepError{ReasonFetchFailed, fmt.Errorf("fetching source: %w", err)}
	}
	r.mu.Lock()
	live := r.live
	lastAttempt, lastFailed := r.status.LastAttemptedRevision, r.status.lastAttemptFailed
	r.mu.Unlock()
	if live != nil && live.Revision == art.Revision {
		return nil // already serving it
	}
	if art.Revision == lastAttempt && lastFailed != nil {
		return lastFailed // recorded failure; wait for a new commit
	}

	r.mu.Lock()
	r.status.LastAttemptedRevision = art.Revision
	r.status.Diagnostics = nil
	r.mu.Unlock()
	r.log.Info("new revision", "revision", art.Revision)

	lp, err := r.buildAndValidate(art)
	if err == nil {
		err = r.apply(ctx, lp)
	}
	r.mu.Lock()
	r.status.lastAttemptFailed = nil
	var se *stepError
	if errors.As(err, &se) && se.reason != ReasonFetchFailed {
		r.status.lastAttemptFailed = se
	}
	r.mu.Unlock()
	return err
}

// buildAndValidate builds the artifact into Objects and parses them into a
// Policy. It fails with BuildFailed or ValidationFailed and records the
// diagnostics in the status either way.
func (r *Reconciler) buildAndValidate(art *sources.Artifact) (*livePolicy, error) {
	objs, err := r.cfg.Build(art.Dir, r.cfg.Path)
	if err != nil {
		return nil, &stepError{ReasonBuildFailed, fmt.Errorf("building %s: %w", art.Revision, err)}
	}
	policy, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(r.cfg.DefaultNamespace))
	r.mu.Lock()
	r.status.Diagnostics = diags
	r.mu.Unlock()
	if diags.HasErrors() {
		return nil, &stepError{ReasonValidationFailed, fmt.Errorf("validating %s: %s", art.Revision, summarizeDiagnostics(diags))}
	}
	return &livePolicy{Revision: art.Revision, Objects: objs, Policy: policy}, nil
}

// apply compiles lp for every connected proxy class, and only when all
// compile, makes it live, pushes it and stores it as the last good revision.
func (r *Reconciler) apply(ctx context.Context, lp *livePolicy) error {
	nodes := connected(r.cfg.Fleet.Nodes())
	fleet := workloads(nodes)
	classes, err := compileClasses(lp.Policy, nodes, fleet)
	if err == nil {
		// Compile a probe class too, so a policy that compiles for no
		// connected proxy still fails here and not when the first proxy joins.
		_, err = lp.Policy.Compile(probeClass(r.cfg.DefaultNamespace), fleet)
	}
	if err != nil {
		return &stepError{ReasonCompileFailed, fmt.Errorf("compiling %s: %w", lp.Revision, err)}
	}
	version := policyVersion(lp.Objects)

	r.mu.Lock()
	old := r.classes
	r.setLive(lp)
	r.classes, r.fleetKey = classes, fleetKey(fleet)
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = lp.Revision, version
	r.mu.Unlock()

	summary := diffClasses(old, classes)
	r.log.Info("applying revision", "revision", lp.Revision, "version", version, "changes", summary.String())
	if r.cfg.Store != nil {
		if err := r.cfg.Store.SaveLastGood(LastGood{Revision: lp.Revision, Version: version, Objects: lp.Objects, AppliedAt: time.Now().UTC()}); err != nil {
			r.log.Warn("saving last good revision", "error", err)
		}
	}
	if summary.Empty() {
		r.log.Info("revision changes no compiled resource; nothing to push", "revision", lp.Revision)
		return nil
	}
	r.assign(ctx, nodes, classes)
	return nil
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

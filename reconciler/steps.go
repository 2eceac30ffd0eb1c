package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"

	"github.com/gitmesh/gitmesh/api/admin"
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
	// ReasonArtifactTooLarge: the revision, or one of its files, is over
	// --max-repo-size or --max-file-size; it was refused before it was read.
	ReasonArtifactTooLarge = "ArtifactTooLarge"
	// ReasonVerificationFailed: the head commit is unsigned or not signed
	// by a trusted key (--verify-pgp-keys, --verify-ssh-keys); nothing of
	// it was built.
	ReasonVerificationFailed = "VerificationFailed"
	// ReasonFailed is a failure no step claimed.
	ReasonFailed = meta.FailedReason
)

// stepError is a failed step: the Ready reason it sets and why.
type stepError struct {
	reason string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// reconcile decides what to do with a fetch's result (from the Run
// goroutine only): nothing for a revision that is served, rolling out,
// held or already failed; else record the attempt and hand the built
// revision to apply, which starts a rollout. It returns the pass's
// failure; the Ready condition is computed once, by the caller. A failed
// revision is not retried until the source moves to another one (or
// 'gitmesh resume').
func (r *Reconciler) reconcile(ctx context.Context, f fetched) error {
	if f.art == nil {
		return f.err
	}
	art := f.art
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
	if f.cand == nil && f.err == nil {
		// The fetch skipped the build of a revision it thought known, and
		// the state moved on meanwhile (a resume, a finished rollout):
		// fetch again, now building it.
		r.fetch.again = true
		return nil
	}

	r.mu.Lock()
	r.status.LastAttemptedRevision = art.Revision
	r.status.lastAttemptFailed = nil
	r.status.Diagnostics = f.diags
	r.mu.Unlock()
	r.forgetFailure()
	r.log.Info("new revision", "revision", art.Revision)

	err := f.err
	if err == nil {
		err = r.apply(ctx, f.cand)
	}
	var se *stepError
	if errors.As(err, &se) {
		r.mu.Lock()
		r.status.lastAttemptFailed = se
		r.mu.Unlock()
		r.recordRefused(art.Revision, se, f.diags)
	}
	return err
}

// recordRefused records in history a revision that failed to build,
// validate or compile, with its first error diagnostics (file:line). A
// refused revision is attempted once per commit, and once more after a
// restart (the refusal is not kept in the state): the newest record
// already refusing it is not repeated.
func (r *Reconciler) recordRefused(revision string, se *stepError, diags compiler.Diagnostics) {
	if r.cfg.Store != nil {
		if h, err := r.cfg.Store.History(1); err == nil && len(h) == 1 && h[0].Phase == admin.PhaseRefused && h[0].Revision == revision {
			return
		}
	}
	var first compiler.Diagnostics
	for _, d := range diags {
		if d.Severity == compiler.SeverityError && len(first) < admin.MaxHistoryDiagnostics {
			first = append(first, d)
		}
	}
	now := time.Now().UTC()
	ro := &rollout{Rollout: admin.Rollout{
		Revision: revision, Trigger: admin.TriggerCommit, Phase: admin.PhaseRefused,
		Reason: se.reason + ": " + se.err.Error(), Diagnostics: first, StartedAt: now, FinishedAt: now,
	}}
	if err := r.saveRollout(ro); err != nil {
		r.log.Warn("saving refused revision", "error", err)
	}
	r.metrics.rollouts.WithLabelValues(string(admin.PhaseRefused)).Inc()
}

// buildAndParse builds the artifact into Objects and parses them into a
// Policy, off the Run goroutine (it touches no state), with the JWKS
// documents of its jwksUri values fetched under ctx. Problems of single
// documents (bad YAML at a line) are diagnostics. It fails with
// BuildFailed or ValidationFailed; the diagnostics are returned either way.
func (r *Reconciler) buildAndParse(ctx context.Context, art *sources.Artifact) (*served, compiler.Diagnostics, error) {
	objs, problems, err := r.cfg.Build(art.Dir, r.cfg.Path)
	if err != nil {
		return nil, nil, &stepError{reasonFor(err, ReasonBuildFailed), fmt.Errorf("building %s: %w", art.Revision, err)}
	}
	policy, diags, reg, jwks := r.parseWithJWKS(ctx, objs, compiler.WithProblems(problems))
	if diags.HasErrors() {
		return nil, diags, &stepError{ReasonValidationFailed, fmt.Errorf("validating %s: %s", art.Revision, summarizeDiagnostics(diags))}
	}
	s := newServed(art.Revision, objs, policy)
	s.reg, s.jwks = reg, jwks
	return s, diags, nil
}

// apply compiles cand for every connected proxy class (and a probe class,
// so a policy that compiles for no connected proxy still fails here), then
// hands it to a rollout, unless it compiles to exactly what is served.
func (r *Reconciler) apply(ctx context.Context, cand *served) error {
	nodes := connected(r.cfg.Fleet.Nodes())
	fleet := workloads(nodes)
	r.mu.Lock()
	stable := r.stable
	r.mu.Unlock()
	r.refreshRegistry(cand) // parsed off the loop: the registry may have moved on
	r.refreshRegistry(stable)
	if err := cand.compile(nodes, fleet, r.probe()); err != nil {
		return &stepError{ReasonCompileFailed, err}
	}
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
	r.startRollout(ctx, cand, rolloutSpec(stable), admin.TriggerCommit)
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
		ro := &rollout{Rollout: admin.Rollout{Revision: s.Revision, Version: s.Version, Trigger: admin.TriggerInitial, Phase: admin.PhasePromoted, Reason: why, StartedAt: now, FinishedAt: now}}
		if err := r.saveRollout(ro); err != nil {
			r.log.Warn("saving rollout", "error", err)
		}
		r.metrics.rollouts.WithLabelValues(string(admin.PhasePromoted)).Inc()
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

// reasonFor is the Ready reason of a failed fetch or build: fallback,
// unless a size limit refused the revision.
func reasonFor(err error, fallback string) string {
	if errors.Is(err, sources.ErrRepoTooLarge) || errors.Is(err, sources.ErrFileTooLarge) {
		return ReasonArtifactTooLarge
	}
	if errors.Is(err, sources.ErrUnverified) {
		return ReasonVerificationFailed
	}
	return fallback
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

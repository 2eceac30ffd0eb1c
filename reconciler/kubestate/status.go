package kubestate

import (
	"context"
	"fmt"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler"
)

// StatusSource is what the status is computed from: the running
// reconciler (*reconciler.Reconciler implements it).
type StatusSource interface {
	Status() admin.Status
}

var _ StatusSource = (*reconciler.Reconciler)(nil)

// stalledReasons are the Ready reasons that no retry fixes: the revision
// stays failed until a new commit or `gitmesh resume` (Flux's Stalled). A
// FetchFailed is retried every interval, so it does not stall.
var stalledReasons = map[string]bool{
	reconciler.ReasonBuildFailed:      true,
	reconciler.ReasonValidationFailed: true,
	reconciler.ReasonCompileFailed:    true,
	reconciler.ReasonRolloutFailed:    true,
}

// markDirty asks PublishStatus to publish now.
func (s *Store) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// PublishStatus writes the MeshRollout's status from src and the stored
// state every interval and after every save, when it changed, until ctx
// is done. Only the leading replica runs it. A failed write is retried at
// the next turn.
func (s *Store) PublishStatus(ctx context.Context, src StatusSource, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		err := s.Publish(ctx, src.Status())
		switch {
		case err != nil && err.Error() != lastErr:
			s.log.Warn("publishing MeshRollout status", "error", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.dirty:
		}
	}
}

// Publish writes the status computed from live and the stored state if
// it differs from what the MeshRollout holds.
func (s *Store) Publish(ctx context.Context, live admin.Status) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.mu.Lock()
	base := s.obj.DeepCopy()
	obj := s.obj.DeepCopy()
	s.project(obj, live)
	s.mu.Unlock()
	if equality.Semantic.DeepEqual(base.Status, obj.Status) {
		return nil
	}
	if err := s.c.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("patching status of MeshRollout %s/%s: %w", s.ns, s.name, err)
	}
	s.mu.Lock()
	s.obj = obj
	s.mu.Unlock()
	return nil
}

// project computes obj's status from live and the stored state. s.mu
// must be held.
func (s *Store) project(obj *v1alpha1.MeshRollout, live admin.Status) {
	st := &obj.Status
	st.ObservedGeneration = obj.Generation
	st.Leader = s.identity
	st.StateSecret = s.stateSecret()
	st.LastAppliedRevision, st.LastAttemptedRevision = live.LastAppliedRevision, live.LastAttemptedRevision
	if st.LastAppliedRevision == "" && len(s.doc.Good) > 0 {
		st.LastAppliedRevision = s.doc.Good[0].Revision
	}

	ro := live.Rollout
	if ro == nil && s.doc.InFlight != nil {
		ro = s.doc.InFlight
	}
	if ro == nil && len(s.doc.History) > 0 {
		ro = &s.doc.History[0]
	}
	st.Phase, st.Wave, st.Rollout = "", "", nil
	if ro != nil {
		rec := rolloutRecord(*ro)
		st.Rollout = &rec
		st.Phase = string(ro.Phase)
		if !ro.Phase.Done() {
			st.Wave = rec.Wave
		}
	}
	st.History = st.History[:0]
	for _, h := range s.doc.History {
		st.History = append(st.History, rolloutRecord(h))
	}
	st.GoodRevisions = st.GoodRevisions[:0]
	for _, m := range s.doc.Good {
		at := metav1.NewTime(m.AppliedAt)
		st.GoodRevisions = append(st.GoodRevisions, v1alpha1.RevisionRecord{Revision: m.Revision, Version: m.Version, AppliedAt: &at, Secret: s.revisionSecret(m.Revision)})
	}
	st.Hold, st.Failure = nil, nil
	if h := s.doc.Hold; h != nil {
		st.Hold = &v1alpha1.HoldRecord{Revision: h.Revision, Head: h.Head, Since: metav1.NewTime(h.Since)}
	}
	if f := s.doc.Failure; f != nil {
		st.Failure = &v1alpha1.FailureRecord{Revision: f.Revision, Reason: f.Reason, Message: f.Message, Since: metav1.NewTime(f.Since)}
	}

	// Conditions, as Flux computes them: Ready from the reconciler,
	// Reconciling while a rollout is in flight, Stalled when only a new
	// commit helps.
	if ready := live.Ready(); ready != nil {
		c := *ready
		c.ObservedGeneration = obj.Generation
		conditions.Set(obj, &c)
	}
	if ro != nil && !ro.Phase.Done() {
		conditions.MarkReconciling(obj, meta.ProgressingReason, "rolling out %s: %s, wave %s", ro.Revision, ro.Phase, st.Wave)
	} else {
		conditions.Delete(obj, meta.ReconcilingCondition)
	}
	if r := conditions.Get(obj, meta.ReadyCondition); r != nil && r.Status == metav1.ConditionFalse && stalledReasons[r.Reason] {
		conditions.MarkStalled(obj, r.Reason, "%s", r.Message)
	} else {
		conditions.Delete(obj, meta.StalledCondition)
	}
}

// rolloutRecord summarizes a rollout for the status (its policy is not shown).
func rolloutRecord(ro admin.Rollout) v1alpha1.RolloutRecord {
	rec := v1alpha1.RolloutRecord{
		ID: int64(ro.ID), Revision: ro.Revision, Version: ro.Version, PreviousRevision: ro.PreviousRevision,
		Trigger: ro.Trigger, Phase: string(ro.Phase), Reason: ro.Reason, Updated: int32(len(ro.Updated)),
		StartedAt: metav1.NewTime(ro.StartedAt),
	}
	if ro.Wave < len(ro.Waves) {
		rec.Wave = fmt.Sprintf("%d/%d %s", ro.Wave+1, len(ro.Waves), ro.Waves[ro.Wave].Name)
	}
	if !ro.FinishedAt.IsZero() {
		t := metav1.NewTime(ro.FinishedAt)
		rec.FinishedAt = &t
	}
	return rec
}

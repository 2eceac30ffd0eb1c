package kubestate

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler"
)

// Event reasons on the MeshRollout. Rollout failures use the Ready
// reasons (FetchFailed, BuildFailed, ValidationFailed, CompileFailed).
const (
	EventRolloutStarted = "RolloutStarted"
	EventWaveStarted    = "WaveStarted"
	EventWavePromoted   = "WavePromoted"
	EventPromoted       = "Promoted"
	EventRolledBack     = "RolledBack"
	EventSuperseded     = "Superseded"
)

// EventComponent is the source component of the Events.
const EventComponent = "gitmesh-controller"

// EventRecorder publishes the reconciler's decisions as Kubernetes Events
// on the MeshRollout, through client-go's record package: identical Events
// are aggregated into one with a count, as Flux's recorder does (the
// EventCorrelator), so a revision that keeps failing does not flood the
// API server. Create it with NewEventRecorder and Shutdown it when done.
type EventRecorder struct {
	b   record.EventBroadcaster
	rec record.EventRecorder
	obj runtime.Object

	// mu protects waves.
	mu sync.Mutex
	// waves is the last wave each rollout started, by rollout ID, to tell
	// a promotion from the first wave.
	waves map[uint64]string
}

var _ reconciler.Recorder = (*EventRecorder)(nil)

// NewEventRecorder returns a recorder of Events on obj (the MeshRollout,
// as Store.Object returns it), written with cs, from host (the replica's
// identity).
func NewEventRecorder(cs kubernetes.Interface, obj *v1alpha1.MeshRollout, host string) *EventRecorder {
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{
		// A rollout emits a handful of Events; allow bursts of rollouts,
		// but keep the spam filter for a flapping source.
		BurstSize: 100, QPS: 1,
	}))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events(obj.Namespace)})
	return &EventRecorder{
		b:     b,
		rec:   b.NewRecorder(scheme, corev1.EventSource{Component: EventComponent, Host: host}),
		obj:   obj.DeepCopy(),
		waves: map[uint64]string{},
	}
}

// Shutdown stops the recorder after the Events queued are sent.
func (e *EventRecorder) Shutdown() { e.b.Shutdown() }

// RolloutEvent records a rollout's start (RolloutStarted), a wave's start
// (WaveStarted for the first, WavePromoted for each later one: the wave
// before passed), and its end (Promoted, Superseded, or a Warning
// RolledBack with the reason).
func (e *EventRecorder) RolloutEvent(ev admin.Event) {
	what := fmt.Sprintf("rollout %d of %s", ev.RolloutID, ev.Revision)
	switch ev.Phase {
	case admin.PhasePending:
		e.rec.Eventf(e.obj, corev1.EventTypeNormal, EventRolloutStarted, "%s started (version %s)", what, ev.Version)
	case admin.PhaseProgressing:
		e.mu.Lock()
		prev := e.waves[ev.RolloutID]
		e.waves[ev.RolloutID] = ev.Wave
		e.mu.Unlock()
		switch {
		case prev == ev.Wave:
		case prev == "":
			e.rec.Eventf(e.obj, corev1.EventTypeNormal, EventWaveStarted, "%s: wave %s started", what, ev.Wave)
		default:
			e.rec.Eventf(e.obj, corev1.EventTypeNormal, EventWavePromoted, "%s: wave %s passed; wave %s started", what, prev, ev.Wave)
		}
	case admin.PhasePromoted:
		e.forget(ev.RolloutID)
		e.rec.Eventf(e.obj, corev1.EventTypeNormal, EventPromoted, "%s promoted: %s", what, ev.Reason)
	case admin.PhaseSuperseded:
		e.forget(ev.RolloutID)
		e.rec.Eventf(e.obj, corev1.EventTypeNormal, EventSuperseded, "%s %s", what, ev.Reason)
	case admin.PhaseRolledBack, admin.PhaseFailed, admin.PhaseAborted:
		e.forget(ev.RolloutID)
		e.rec.Eventf(e.obj, corev1.EventTypeWarning, EventRolledBack, "%s rolled back (%s): %s", what, ev.Phase, ev.Reason)
	}
}

func (e *EventRecorder) forget(id uint64) {
	e.mu.Lock()
	delete(e.waves, id)
	e.mu.Unlock()
}

// ReconcileFailed records a Warning with the Ready reason and message.
func (e *EventRecorder) ReconcileFailed(revision, reason, message string) {
	if revision != "" {
		e.rec.AnnotatedEventf(e.obj, map[string]string{AnnotationRevision: revision}, corev1.EventTypeWarning, reason, "%s", message)
		return
	}
	e.rec.Eventf(e.obj, corev1.EventTypeWarning, reason, "%s", message)
}

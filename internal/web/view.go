package web

import (
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/reconciler"
)

// Tones are the page's colours for a value, its CSS classes tone-<tone>.
const (
	toneOK   = "ok"
	toneBad  = "bad"
	toneWarn = "warn"
	toneInfo = "info"
)

// vocab maps the admin API's values to tones, so the page's script holds
// none of them: a phase, state or result added or renamed in api/admin is
// shown as it is named there.
type vocab struct {
	Phases     map[admin.Phase]phaseInfo         `json:"phases"`
	States     map[admin.SyncState]string        `json:"states"`
	Results    map[admin.CheckResult]string      `json:"results"`
	Severities map[compiler.Severity]string      `json:"severities"`
	Conditions map[metav1.ConditionStatus]string `json:"conditions"`
	// NodeShapes is how the graph draws each kind of node: triangle,
	// circle or diamond, as Kiali does.
	NodeShapes map[admin.GraphNodeKind]string `json:"nodeShapes"`
}

// phaseInfo is a phase's tone and whether it ends a rollout.
type phaseInfo struct {
	Tone string `json:"tone"`
	Done bool   `json:"done"`
}

func newVocab() vocab {
	v := vocab{
		Phases: map[admin.Phase]phaseInfo{},
		States: map[admin.SyncState]string{
			admin.StateSynced: toneOK, admin.StateStale: toneWarn, admin.StateNacked: toneBad,
		},
		Results: map[admin.CheckResult]string{
			admin.Pass: toneOK, admin.Fail: toneBad, admin.Inconclusive: toneWarn,
		},
		Severities: map[compiler.Severity]string{
			compiler.SeverityError: toneBad, compiler.SeverityWarning: toneWarn, compiler.SeverityInfo: toneInfo,
		},
		Conditions: map[metav1.ConditionStatus]string{
			metav1.ConditionTrue: toneOK, metav1.ConditionFalse: toneBad, metav1.ConditionUnknown: toneWarn,
		},
		NodeShapes: map[admin.GraphNodeKind]string{
			admin.NodeService: "triangle", admin.NodeApp: "circle", admin.NodeUnknown: "diamond",
		},
	}
	for _, p := range admin.Phases() {
		v.Phases[p] = phaseInfo{Tone: phaseTone(p), Done: p.Done()}
	}
	return v
}

// phaseTone is the colour of a rollout phase: green promoted, red rolled
// back or failed, amber held, blue moving.
func phaseTone(p admin.Phase) string {
	switch p {
	case admin.PhasePromoted:
		return toneOK
	case admin.PhaseRolledBack, admin.PhaseFailed, admin.PhaseRefused:
		return toneBad
	case admin.PhasePaused, admin.PhasePending, admin.PhaseSuperseded, admin.PhaseAborted, admin.PhaseManualRollback:
		return toneWarn
	}
	return toneInfo
}

// statusView is the status event: the admin API's Status with what the
// page would otherwise have to derive from Go types (durations, Done).
type statusView struct {
	Status admin.Status `json:"status"`
	// Ready is the Ready condition (nil before the first pass).
	Ready *metav1.Condition `json:"ready,omitempty"`
	// Refused is set when the last attempted revision was refused (Ready
	// is False because it did not build, validate or compile, or failed
	// its verification): Status.Diagnostics are its findings.
	Refused bool `json:"refused"`
	// Rollout describes Status.Rollout's waves.
	Rollout *rolloutView `json:"rollout,omitempty"`
}

// rolloutView is a rollout's progress through its waves.
type rolloutView struct {
	// Done is set when the rollout has ended (its phase is final).
	Done bool `json:"done"`
	// Tone is its phase's.
	Tone string `json:"tone"`
	// WavesDone counts the waves that completed.
	WavesDone int        `json:"wavesDone"`
	Waves     []waveView `json:"waves"`
}

// Wave states in a waveView (also CSS classes).
const (
	waveDone    = "done"
	waveCurrent = "current"
	wavePending = "pending"
	waveStopped = "stopped"
)

// waveView is one wave of a rollout.
type waveView struct {
	Name string `json:"name"`
	// Target is what the wave covers: "25%" or "app=frontend".
	Target string `json:"target"`
	// Proxies is how many proxies the wave updated (0 before it started).
	Proxies int `json:"proxies"`
	// State is done, current, pending or stopped (the rollout ended in it).
	State string `json:"state"`
	// BakeSeconds is the wave's bake time.
	BakeSeconds float64   `json:"bakeSeconds"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	SyncedAt    time.Time `json:"syncedAt,omitzero"`
	BakedAt     time.Time `json:"bakedAt,omitzero"`
}

func newStatusView(st admin.Status) statusView {
	v := statusView{Status: st, Ready: st.Ready()}
	// A failed fetch refused no revision, and a failed rollout's reason
	// is the rollout's (shown with it): neither is about its diagnostics.
	v.Refused = v.Ready != nil && v.Ready.Status == metav1.ConditionFalse &&
		v.Ready.Reason != reconciler.ReasonFetchFailed && v.Ready.Reason != reconciler.ReasonRolloutFailed
	if st.Rollout != nil {
		v.Rollout = newRolloutView(*st.Rollout)
	}
	return v
}

func newRolloutView(ro admin.Rollout) *rolloutView {
	v := &rolloutView{Done: ro.Phase.Done(), Tone: phaseTone(ro.Phase)}
	n := max(len(ro.Policy.Waves), len(ro.Waves), 1)
	for i := range n {
		w := waveView{Name: fmt.Sprintf("wave-%d", i+1), Target: "100%"}
		if i < len(ro.Policy.Waves) {
			pw := ro.Policy.Waves[i]
			if pw.Name != "" {
				w.Name = pw.Name
			}
			w.Target = waveTarget(pw.Percent, pw.Selector)
			w.BakeSeconds = pw.Bake.Seconds()
		}
		if i < len(ro.Waves) {
			rec := ro.Waves[i]
			if rec.Name != "" {
				w.Name = rec.Name
			}
			w.Proxies = len(rec.Nodes)
			w.StartedAt, w.SyncedAt, w.BakedAt = rec.StartedAt, rec.SyncedAt, rec.BakedAt
		}
		switch {
		case ro.Phase == admin.PhasePromoted || i < ro.Wave || !w.BakedAt.IsZero():
			w.State = waveDone
			v.WavesDone++
		case i == ro.Wave && v.Done:
			w.State = waveStopped
		case i == ro.Wave:
			w.State = waveCurrent
		default:
			w.State = wavePending
		}
		v.Waves = append(v.Waves, w)
	}
	return v
}

// waveTarget describes what a wave covers: "25%" or "app=frontend".
func waveTarget(percent *int32, sel *v1alpha1.LabelSelector) string {
	if percent != nil {
		return fmt.Sprintf("%d%%", *percent)
	}
	if sel == nil {
		return ""
	}
	parts := make([]string, 0, len(sel.MatchLabels))
	for k, v := range sel.MatchLabels {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

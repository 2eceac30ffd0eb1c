package reconciler

import (
	"crypto/sha256"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
	"github.com/gitmesh/gitmesh/xds"
)

// Phase is where a Rollout is in its journey through the fleet.
type Phase string

// Rollout phases. Pending -> Progressing(wave n) -> Baking -> (next wave:
// Progressing) ... -> Promoted; RolledBack, Failed and Superseded end a
// rollout early; Paused holds it where it is.
const (
	// PhasePending waits for a window that allows starting.
	PhasePending Phase = "Pending"
	// PhaseProgressing has pushed the current wave and waits for its ACKs.
	PhaseProgressing Phase = "Progressing"
	// PhaseBaking watches the current wave (analysis, bake time, gates).
	PhaseBaking Phase = "Baking"
	// PhasePaused holds the rollout until resume.
	PhasePaused Phase = "Paused"
	// PhasePromoted: every proxy runs the revision; it is the new last good.
	PhasePromoted Phase = "Promoted"
	// PhaseRolledBack: a NACK, a failed gate or a person rolled it back.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseFailed: a wave missed its progress deadline; rolled back.
	PhaseFailed Phase = "Failed"
	// PhaseSuperseded: a newer revision replaced it mid-rollout.
	PhaseSuperseded Phase = "Superseded"
)

// Done reports whether p ends a rollout.
func (p Phase) Done() bool {
	switch p {
	case PhasePromoted, PhaseRolledBack, PhaseFailed, PhaseSuperseded:
		return true
	}
	return false
}

// Rollout triggers.
const (
	TriggerCommit   = "commit"   // a new revision in Git
	TriggerRollback = "rollback" // `gitmesh rollback`
	TriggerInitial  = "initial"  // the first revision, served to all at once
)

// Rollout is one revision's journey through the fleet. It is persisted
// (in-flight and in history) as JSON.
type Rollout struct {
	ID               uint64 `json:"id"`
	Revision         string `json:"revision"`
	Version          string `json:"version"`
	PreviousRevision string `json:"previousRevision,omitempty"`
	Trigger          string `json:"trigger"`
	Phase            Phase  `json:"phase"`
	// Wave is the index of the current wave.
	Wave  int          `json:"wave"`
	Waves []WaveRecord `json:"waves"`
	// Reason says why the rollout ended, or why it waits.
	Reason string `json:"reason,omitempty"`
	// Waiting says what the rollout waits for now (a window, ACKs, bake
	// time, analysis, a webhook), with until when if known.
	Waiting    string    `json:"waiting,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Readings are the last analysis readings.
	Readings []analysis.Reading `json:"readings,omitempty"`
	// Updated lists the proxies that were given the revision.
	Updated []string `json:"updated,omitempty"`
	// Policy is the RolloutPolicy in force (the revision's own, or the default).
	Policy v1alpha1.RolloutPolicySpec `json:"policy"`
	// PausedFrom is the phase to return to on resume.
	PausedFrom Phase `json:"pausedFrom,omitempty"`

	// Canary is the revision being rolled out (not persisted here; the
	// store keeps its objects).
	Canary *served `json:"-"`

	updated     map[string]bool
	waveStarted time.Time // when the current wave was pushed (progress deadline)
	bakeUntil   time.Time
	lastCheck   time.Time
	failures    int
	verdict     analysis.Result
	start       map[string]analysis.Sample // scrape at bake start, by node id
}

// WaveRecord is one wave of a Rollout.
type WaveRecord struct {
	Name string `json:"name"`
	// Nodes are the proxies the wave updated (cumulative membership minus
	// earlier waves).
	Nodes     []string  `json:"nodes"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	SyncedAt  time.Time `json:"syncedAt,omitzero"`
	BakedAt   time.Time `json:"bakedAt,omitzero"`
}

func (ro *Rollout) isUpdated(id string) bool { return ro.updated[id] }

// markUpdated adds ids to the updated set.
func (ro *Rollout) markUpdated(ids []string) {
	if ro.updated == nil {
		ro.updated = map[string]bool{}
	}
	for _, id := range ids {
		if !ro.updated[id] {
			ro.updated[id] = true
			ro.Updated = append(ro.Updated, id)
		}
	}
	sort.Strings(ro.Updated)
}

// waveName returns the display name of wave i of spec.
func waveName(spec v1alpha1.RolloutPolicySpec, i int) string {
	if i < len(spec.Waves) && spec.Waves[i].Name != "" {
		return spec.Waves[i].Name
	}
	return fmt.Sprintf("wave-%d", i+1)
}

// fleetOrder orders node ids by a hash of the id, so wave membership is
// spread over the fleet and stable across restarts and revisions.
func fleetOrder(ids []string) []string {
	out := append([]string(nil), ids...)
	key := func(id string) string { h := sha256.Sum256([]byte(id)); return string(h[:]) }
	sort.Slice(out, func(i, j int) bool {
		ki, kj := key(out[i]), key(out[j])
		if ki != kj {
			return ki < kj
		}
		return out[i] < out[j]
	})
	return out
}

// waveMembers returns the proxies that must run the revision once wave i
// starts: for a percent wave, the first ceil(percent% of the fleet) in
// fleetOrder (at least one); for a selector wave, the proxies matching it;
// always including those already updated.
func waveMembers(w v1alpha1.Wave, nodes []xds.NodeStatus, already map[string]bool) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.Workload.ID)
	}
	set := map[string]bool{}
	for id := range already {
		set[id] = true
	}
	switch {
	case w.Percent != nil:
		order := fleetOrder(ids)
		k := int(math.Ceil(float64(*w.Percent) * float64(len(order)) / 100))
		if k < 1 && len(order) > 0 {
			k = 1
		}
		for _, id := range order[:min(k, len(order))] {
			set[id] = true
		}
	case w.Selector != nil:
		for _, n := range nodes {
			if w.Selector.Matches(n.Workload.Labels) {
				set[n.Workload.ID] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// effectiveWaves returns spec's waves, or one wave of 100% when it has none.
func effectiveWaves(spec v1alpha1.RolloutPolicySpec) []v1alpha1.Wave {
	if len(spec.Waves) == 0 {
		return v1alpha1.Default().Spec.Waves
	}
	return spec.Waves
}

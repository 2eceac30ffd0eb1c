package reconciler

import (
	"crypto/sha256"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
	"github.com/gitmesh/gitmesh/xds"
)

// rollout is the Run goroutine's state of one revision's journey through
// the fleet: the record the admin API shows and the store persists, plus
// what only the running state machine needs.
type rollout struct {
	admin.Rollout

	// Canary is the revision being rolled out (the store keeps its objects
	// beside the record).
	Canary *served

	updated     map[string]bool
	waveStarted time.Time // when the current wave was pushed (progress deadline)
	bakeUntil   time.Time
	lastCheck   time.Time
	failures    int
	verdict     analysis.Result
	bake        bakeState
}

func (ro *rollout) isUpdated(id string) bool { return ro.updated[id] }

// markUpdated adds ids to the updated set.
func (ro *rollout) markUpdated(ids []string) {
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

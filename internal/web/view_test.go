package web

import (
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler"
)

// TestStatusViewRefused: the diagnostics banner is for a revision that
// was refused, not for a failed fetch or a rolled-back rollout.
func TestStatusViewRefused(t *testing.T) {
	tests := []struct {
		reason string // "" for no Ready condition
		status bool
		want   bool
	}{
		{reconciler.ReasonValidationFailed, false, true},
		{reconciler.ReasonCompileFailed, false, true},
		{reconciler.ReasonFetchFailed, false, false},
		{reconciler.ReasonRolloutFailed, false, false},
		{reconciler.ReasonSucceeded, true, false},
		{"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			var st admin.Status
			switch {
			case tt.reason == "":
			case tt.status:
				conditions.MarkTrue(st.Object(), meta.ReadyCondition, tt.reason, "msg")
			default:
				conditions.MarkFalse(st.Object(), meta.ReadyCondition, tt.reason, "msg")
			}
			if got := newStatusView(st).Refused; got != tt.want {
				t.Errorf("refused %v; want %v", got, tt.want)
			}
		})
	}
}

// TestRolloutView: each wave's state through a rollout's phases.
func TestRolloutView(t *testing.T) {
	pct := func(v int32) *int32 { return &v }
	policy := v1alpha1.RolloutPolicySpec{Waves: []v1alpha1.Wave{
		{Name: "canary", Selector: &v1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "frontend", "tier": "web"}}},
		{Percent: pct(50)}, {Percent: pct(100)},
	}}
	tests := []struct {
		phase admin.Phase
		wave  int
		want  string
		done  int
	}{
		{admin.PhaseProgressing, 0, "current pending pending", 0},
		{admin.PhaseBaking, 1, "done current pending", 1},
		{admin.PhaseRolledBack, 1, "done stopped pending", 1},
		{admin.PhasePromoted, 2, "done done done", 3},
	}
	for _, tt := range tests {
		t.Run(string(tt.phase), func(t *testing.T) {
			v := newRolloutView(admin.Rollout{Phase: tt.phase, Wave: tt.wave, Policy: policy})
			var states []string
			for _, w := range v.Waves {
				states = append(states, w.State)
			}
			if got := strings.Join(states, " "); got != tt.want || v.WavesDone != tt.done || v.Done != tt.phase.Done() {
				t.Errorf("waves %q, %d done, done %v; want %q, %d", got, v.WavesDone, v.Done, tt.want, tt.done)
			}
			if v.Waves[0].Name != "canary" || v.Waves[0].Target != "app=frontend,tier=web" || v.Waves[1].Name != "wave-2" || v.Waves[1].Target != "50%" {
				t.Errorf("waves %+v", v.Waves)
			}
		})
	}
}

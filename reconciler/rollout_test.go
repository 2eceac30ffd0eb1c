package reconciler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/xds"
)

func fleetOf(n int, labels func(i int) map[string]string) []xds.NodeStatus {
	var out []xds.NodeStatus
	for i := range n {
		w := nodemeta.Workload{ID: fmt.Sprintf("node-%02d", i)}
		if labels != nil {
			w.Labels = labels(i)
		}
		out = append(out, xds.NodeStatus{Workload: w, Connected: true})
	}
	return out
}

func pct(p int32) *int32 { return &p }

func TestWaveMembers(t *testing.T) {
	tests := []struct {
		name    string
		wave    v1alpha1.Wave
		nodes   int
		already []string
		want    int
	}{
		{name: "25% of 4 is one proxy", wave: v1alpha1.Wave{Percent: pct(25)}, nodes: 4, want: 1},
		{name: "rounded up", wave: v1alpha1.Wave{Percent: pct(10)}, nodes: 11, want: 2},
		{name: "at least one", wave: v1alpha1.Wave{Percent: pct(1)}, nodes: 3, want: 1},
		{name: "100% is everyone", wave: v1alpha1.Wave{Percent: pct(100)}, nodes: 7, want: 7},
		{name: "selector", wave: v1alpha1.Wave{Selector: &v1alpha1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}, nodes: 6, want: 3},
		{name: "keeps the already updated", wave: v1alpha1.Wave{Percent: pct(1)}, nodes: 10, already: []string{"node-98", "node-99"}, want: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := fleetOf(tc.nodes, func(i int) map[string]string {
				if i%2 == 0 {
					return map[string]string{"zone": "a"}
				}
				return map[string]string{"zone": "b"}
			})
			already := map[string]bool{}
			for _, id := range tc.already {
				already[id] = true
			}
			got := waveMembers(tc.wave, nodes, already)
			if len(got) != tc.want {
				t.Errorf("got %d members %v; want %d", len(got), got, tc.want)
			}
			for _, id := range tc.already {
				if !strings.Contains(strings.Join(got, ","), id) {
					t.Errorf("members %v lost already updated %s", got, id)
				}
			}
		})
	}
}

// TestWaveMembersStable: membership depends on the node ids only, so a
// restarted controller (or a fleet listed in another order) picks the same
// proxies, and a growing share is a superset of the smaller one.
func TestWaveMembersStable(t *testing.T) {
	nodes := fleetOf(20, nil)
	reversed := append([]xds.NodeStatus(nil), nodes...)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	a := waveMembers(v1alpha1.Wave{Percent: pct(25)}, nodes, nil)
	b := waveMembers(v1alpha1.Wave{Percent: pct(25)}, reversed, nil)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("got %v and %v for the same fleet in another order; want equal", a, b)
	}
	half := waveMembers(v1alpha1.Wave{Percent: pct(50)}, nodes, nil)
	for _, id := range a {
		if !strings.Contains(strings.Join(half, ","), id) {
			t.Errorf("50%% wave %v does not contain 25%% member %s", half, id)
		}
	}
}

func TestWindowsAllow(t *testing.T) {
	// 2026-11-26 is a Thursday.
	at := func(hhmm string) time.Time {
		ts, err := time.Parse("2006-01-02 15:04", "2026-11-26 "+hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	hour := v1alpha1.Duration{Duration: time.Hour}
	deny := v1alpha1.Window{Name: "lunch", Schedule: "0 12 * * *", Duration: hour, Action: v1alpha1.WindowDeny}
	allow := v1alpha1.Window{Name: "office", Schedule: "0 9 * * 1-5", Duration: v1alpha1.Duration{Duration: 8 * time.Hour}, Action: v1alpha1.WindowAllow}
	weekend := v1alpha1.Window{Name: "weekend", Schedule: "0 0 * * 6", Duration: v1alpha1.Duration{Duration: 48 * time.Hour}, Action: v1alpha1.WindowDeny}
	tests := []struct {
		name    string
		windows []v1alpha1.Window
		now     time.Time
		want    bool
		wantWhy string
	}{
		{name: "no windows", now: at("03:00"), want: true},
		{name: "inside deny", windows: []v1alpha1.Window{deny}, now: at("12:30"), want: false, wantWhy: "deny window lunch is open until 2026-11-26T13:00:00Z"},
		{name: "deny start is inside", windows: []v1alpha1.Window{deny}, now: at("12:00"), want: false, wantWhy: "until 2026-11-26T13:00:00Z"},
		{name: "deny end is outside", windows: []v1alpha1.Window{deny}, now: at("13:00"), want: true},
		{name: "inside allow", windows: []v1alpha1.Window{allow}, now: at("10:00"), want: true},
		{name: "outside allow", windows: []v1alpha1.Window{allow}, now: at("18:00"), want: false, wantWhy: "next opens at 2026-11-27T09:00:00Z (office)"},
		{name: "deny wins inside allow", windows: []v1alpha1.Window{allow, deny}, now: at("12:15"), want: false, wantWhy: "lunch"},
		{name: "a weekend freeze is not open on Thursday", windows: []v1alpha1.Window{weekend}, now: at("12:00"), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := windowsAllow(tc.windows, tc.now)
			if got != tc.want || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("got %v %q; want %v with %q", got, why, tc.want, tc.wantWhy)
			}
		})
	}
}

func TestPhaseDone(t *testing.T) {
	for p, want := range map[admin.Phase]bool{
		admin.PhasePending: false, admin.PhaseProgressing: false, admin.PhaseBaking: false, admin.PhasePaused: false,
		admin.PhasePromoted: true, admin.PhaseRolledBack: true, admin.PhaseFailed: true, admin.PhaseSuperseded: true,
	} {
		if got := p.Done(); got != want {
			t.Errorf("%s.Done() = %v; want %v", p, got, want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/reconciler"
)

// fakeAdmin serves a script of statuses on loopback: each GET of
// /api/v1/status answers the next one, then the last one forever.
type fakeAdmin struct {
	mu    sync.Mutex // guards calls
	calls int
	steps []admin.Status
	srv   *httptest.Server
}

func newFakeAdmin(t *testing.T, steps ...admin.Status) *fakeAdmin {
	f := &fakeAdmin{steps: steps}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/status" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		st := f.steps[min(f.calls, len(f.steps)-1)]
		if st.LastReconcileTime.IsZero() {
			// A controller passes on: each answer from a newer pass.
			st.LastReconcileTime = time.Unix(1700000000, 0).Add(time.Duration(f.calls) * time.Second)
		}
		f.calls++
		f.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// statusWith builds a Status with a Ready condition and a rollout.
func statusWith(ready metav1.ConditionStatus, reason, msg string, ro *admin.Rollout) admin.Status {
	st := admin.Status{LastAppliedRevision: "main@sha1:aaaa1111", LastAttemptedRevision: "main@sha1:bbbb2222", Rollout: ro}
	switch ready {
	case metav1.ConditionTrue:
		conditions.MarkTrue(st.Object(), "Ready", reason, "%s", msg)
	case metav1.ConditionFalse:
		conditions.MarkFalse(st.Object(), "Ready", reason, "%s", msg)
	default:
		conditions.MarkUnknown(st.Object(), "Ready", reason, "%s", msg)
	}
	return st
}

func rolloutIn(phase admin.Phase, wave int) *admin.Rollout {
	return &admin.Rollout{ID: 7, Revision: "main@sha1:bbbb2222", Trigger: admin.TriggerCommit, Phase: phase, Wave: wave,
		Waves: []admin.WaveRecord{{Name: "canary", Nodes: []string{"a"}}, {Name: "everyone", Nodes: []string{"b"}}}, Reason: "why"}
}

func TestWatchStatus(t *testing.T) {
	baking := statusWith(metav1.ConditionUnknown, reconciler.ReasonProgressing, "rolling out", rolloutIn(admin.PhaseBaking, 0))
	wave2 := statusWith(metav1.ConditionUnknown, reconciler.ReasonProgressing, "rolling out", rolloutIn(admin.PhaseProgressing, 1))
	promoted := statusWith(metav1.ConditionTrue, reconciler.ReasonSucceeded, "Applied", rolloutIn(admin.PhasePromoted, 1))
	rolledBack := statusWith(metav1.ConditionFalse, reconciler.ReasonRolloutFailed, "rollout ended RolledBack", rolloutIn(admin.PhaseRolledBack, 0))
	refused := statusWith(metav1.ConditionFalse, reconciler.ReasonValidationFailed, "validating main@sha1:bbbb2222: 1 error(s): bad.yaml:3: GM0202", rolloutIn(admin.PhasePromoted, 1))
	fetchFailed := statusWith(metav1.ConditionFalse, reconciler.ReasonFetchFailed, "fetching source: connection refused", nil)
	idle := statusWith(metav1.ConditionTrue, reconciler.ReasonSucceeded, "Applied", nil)

	tests := []struct {
		name     string
		steps    []admin.Status
		o        watchOptions
		wantCode int
		want     []string // in the output, in order
		wantNot  []string
		// wantBlocks is how many status blocks a non-terminal writes.
		wantBlocks int
	}{
		{
			name:  "promoted exits 0; a pipe gets each change once, no escapes",
			steps: []admin.Status{baking, baking, baking, wave2, wave2, promoted},
			want: []string{"Baking  wave 1/2", "Progressing  wave 2/2", "Promoted  wave 2/2",
				"rollout #7 of main@sha1:bbbb2222 Promoted: why"},
			wantNot:    []string{"\033"},
			wantBlocks: 3,
		},
		{
			name:     "rolled back exits 1",
			steps:    []admin.Status{baking, rolledBack},
			wantCode: 1,
			want:     []string{"Baking", "RolledBack  wave 1/2", "rollout #7 of main@sha1:bbbb2222 RolledBack: why"},
		},
		{
			name:     "a refused revision exits 1 with its diagnostic",
			steps:    []admin.Status{refused},
			wantCode: 1,
			want:     []string{"main@sha1:bbbb2222 Refused (ValidationFailed): validating main@sha1:bbbb2222: 1 error(s): bad.yaml:3"},
		},
		{
			name:  "a failing fetch waits for Git to come back",
			steps: []admin.Status{fetchFailed, fetchFailed, idle},
			want:  []string{"FetchFailed", "nothing in flight; serving main@sha1:aaaa1111"},
		},
		{
			name:     "an ended rollout waits for a pass after the watch began",
			steps:    []admin.Status{stale(promoted), stale(promoted), baking, rolledBack},
			wantCode: 1,
			want:     []string{"Promoted  wave 2/2", "Baking", "RolledBack"},
		},
		{
			name:  "an idle controller settles after its next pass",
			steps: []admin.Status{stale(idle), stale(idle), idle},
			want:  []string{"nothing in flight; serving main@sha1:aaaa1111"},
		},
		{
			name:  "--revision waits for that revision's rollout",
			steps: []admin.Status{idle, idle, promoted},
			o:     watchOptions{revision: "bbbb22"},
			want:  []string{"Promoted  wave 2/2", "rollout #7 of main@sha1:bbbb2222 Promoted"},
		},
		{
			name:     "--timeout exits 1",
			steps:    []admin.Status{baking},
			o:        watchOptions{timeout: 100 * time.Millisecond},
			wantCode: 1,
			want:     []string{"timed out after 100ms waiting for the rollout to settle"},
		},
		{
			name:       "a terminal is redrawn in place",
			steps:      []admin.Status{baking, baking, promoted},
			o:          watchOptions{terminal: true},
			want:       []string{clearScreen + "Revision:", clearScreen + "Revision:", clearScreen + "Revision:", "Promoted"},
			wantBlocks: 3,
		},
		{
			name:       "JSON writes one document per change",
			steps:      []admin.Status{baking, baking, promoted},
			o:          watchOptions{output: "json"},
			want:       []string{`"phase":"Baking"`, `"wave":1`, `"phase":"Promoted"`, `"wave":2`},
			wantNot:    []string{"\033", "rollout #7"},
			wantBlocks: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmin(t, tc.steps...)
			o := tc.o
			o.watch, o.interval = true, time.Millisecond
			if o.output == "" {
				o.output = "text"
			}
			var out bytes.Buffer
			err := watchStatus(context.Background(), &adminClient{base: f.srv.URL, http: f.srv.Client()}, &out, o)
			code := 0
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				code = 2
			}
			got := out.String()
			if err != nil {
				got += err.Error()
			}
			if code != tc.wantCode {
				t.Errorf("exit %d; want %d\n%s", code, tc.wantCode, got)
			}
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tc.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("output has %q:\n%s", w, got)
				}
			}
			if tc.wantBlocks > 0 {
				if n := strings.Count(got, "Revision:"); n != tc.wantBlocks {
					t.Errorf("%d status blocks; want %d:\n%s", n, tc.wantBlocks, got)
				}
			}
			if tc.wantBlocks < 0 {
				if n := strings.Count(got, "\n{"); n+1 != 2 {
					t.Errorf("%d JSON documents; want 2 (one per change):\n%s", n+1, got)
				}
			}
		})
	}
}

// stale is st as read before the controller's next pass: its pass started
// at a fixed time.
func stale(st admin.Status) admin.Status {
	st.LastReconcileTime = time.Unix(1600000000, 0)
	return st
}

func TestWatchInterrupted(t *testing.T) {
	f := newFakeAdmin(t, statusWith(metav1.ConditionUnknown, reconciler.ReasonProgressing, "rolling out", rolloutIn(admin.PhaseBaking, 0)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := watchStatus(ctx, &adminClient{base: f.srv.URL, http: f.srv.Client()}, &out, watchOptions{watch: true, interval: time.Millisecond, output: "text"})
	if err != nil {
		t.Errorf("an interrupted watch returned %v; want nil (exit 0)", err)
	}
}

func TestPrintStatusAndHistory(t *testing.T) {
	ro := rolloutIn(admin.PhaseBaking, 0)
	ro.Readings = []admin.Reading{
		{Metric: "request-success-rate", Unit: "%", Threshold: ">= 99%", Result: admin.Inconclusive, Message: "0 requests through the wave"},
		{Metric: "request-duration", Value: 12.5, Unit: "ms", Threshold: "<= 500ms", Requests: 40, Result: admin.Pass},
	}
	st := statusWith(metav1.ConditionUnknown, reconciler.ReasonProgressing, "rolling out", ro)
	initial := statusWith(metav1.ConditionTrue, reconciler.ReasonSucceeded, "Applied",
		&admin.Rollout{ID: 1, Revision: "main@sha1:aaaa1111", Trigger: admin.TriggerInitial, Phase: admin.PhasePromoted, FinishedAt: time.Now()})
	tests := []struct {
		name    string
		st      admin.Status
		want    []string
		wantNot []string
	}{
		{
			name: "an inconclusive reading that measured nothing shows n/a",
			st:   st,
			want: []string{"Rollout #7: main@sha1:bbbb2222  Baking  wave 1/2", "request-success-rate  n/a", "inconclusive", "request-duration      12.5ms"},
			wantNot: []string{
				"0%",
			},
		},
		{
			name:    "a rollout without waves shows no wave",
			st:      initial,
			want:    []string{"Rollout #1: main@sha1:aaaa1111  Promoted  (finished "},
			wantNot: []string{"wave 1/0", "wave 0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, &tc.st)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(b.String(), w) {
					t.Errorf("status has %q:\n%s", w, b.String())
				}
			}
		})
	}

	t.Run("history", func(t *testing.T) {
		aborted := *rolloutIn(admin.PhaseAborted, 0)
		var b bytes.Buffer
		if err := printHistory(&b, []admin.Rollout{aborted, *initial.Rollout}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(b.String(), "\n")
		if f := strings.Fields(lines[1]); len(f) < 5 || f[3] != "Aborted" || f[4] != "1/2" {
			t.Errorf("aborted in wave 1 of 2: row %q; want outcome Aborted, wave 1/2", lines[1])
		}
		if f := strings.Fields(lines[2]); len(f) < 5 || f[3] != "Promoted" || f[4] != "-" {
			t.Errorf("initial revision: row %q; want outcome Promoted, wave -", lines[2])
		}
	})
}

func TestRolloutJSONWave(t *testing.T) {
	ro := rolloutIn(admin.PhaseBaking, 1)
	b, err := json.Marshal(ro)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"wave":2`) {
		t.Errorf("JSON %s; want \"wave\":2 for the second wave, as text says wave 2/2", b)
	}
	var back admin.Rollout
	if err := json.Unmarshal(b, &back); err != nil || back.Wave != 1 || back.WaveNumber() != 2 {
		t.Errorf("decoded wave index %d (number %d), %v; want index 1, number 2", back.Wave, back.WaveNumber(), err)
	}
}

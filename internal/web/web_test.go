package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// source is a Source whose status and history the test sets.
type source struct {
	mu      sync.Mutex // protects status, history
	status  admin.Status
	history []admin.Rollout
}

func (s *source) Status() admin.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *source) History(int) ([]admin.Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history, nil
}

func (s *source) set(f func(*admin.Status, *[]admin.Rollout)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status, &s.history)
}

// TestPageAndAssets: the page and its files are served from the binary
// with a content security policy that lets only them run; directories
// and unknown files are not found.
func TestPageAndAssets(t *testing.T) {
	srv := httptest.NewServer(New(&source{}, fleet{}).Handler())
	defer srv.Close()
	tests := []struct {
		path, wantType, wantBody string
		wantCode                 int
	}{
		{"/", "text/html", `<script src="/ui/app.js"`, http.StatusOK},
		{"/ui/app.js", "javascript", "/api/v1/events", http.StatusOK},
		{"/ui/graph.js", "javascript", "gitmeshGraph", http.StatusOK},
		{"/ui/style.css", "text/css", ".badge", http.StatusOK},
		{"/ui/", "", "", http.StatusNotFound},
		{"/ui/index.html", "", "", http.StatusNotFound},
		{"/ui/nothing.js", "", "", http.StatusNotFound},
		{"/elsewhere", "", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d; want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("Content-Type %q; want %s", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
}

// event is one server-sent event.
type event struct{ name, data string }

// readEvents parses the stream of body onto a channel (comments as events
// named ":"), closed when the stream ends.
func readEvents(body io.Reader) <-chan event {
	ch := make(chan event, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (event{}) {
					ch <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, ":"):
				ch <- event{name: ":"}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// next returns the next event named name, skipping others, within 10s.
func next(t *testing.T, ch <-chan event, name string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended before a %q event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event within 10s", name)
		}
	}
}

// TestEvents: a page's stream starts with the vocabulary, the status and
// the history; a change of status is sent, with the history read again;
// an idle stream carries keep-alive comments; the stream ends when Run
// returns.
func TestEvents(t *testing.T) {
	src := &source{}
	pct := int32(25)
	src.set(func(st *admin.Status, h *[]admin.Rollout) {
		st.Proxies = []admin.ProxyStatus{{ID: "client-1", State: admin.StateSynced}}
		st.Rollout = &admin.Rollout{ID: 2, Revision: "main@sha1:2222", Phase: admin.PhaseBaking, Wave: 0,
			Waves:    []admin.WaveRecord{{Name: "canary", Nodes: []string{"client-1"}, SyncedAt: time.Now()}},
			Policy:   v1alpha1.RolloutPolicySpec{Waves: []v1alpha1.Wave{{Name: "canary", Percent: &pct, Bake: v1alpha1.Duration{Duration: 2 * time.Second}}, {Percent: ptr(int32(100))}}},
			Readings: []admin.Reading{{Metric: v1alpha1.MetricSuccessRate, Value: 100, Unit: "%", Threshold: ">= 99%", Requests: 12, Result: admin.Pass}},
		}
		*h = []admin.Rollout{{ID: 1, Revision: "main@sha1:1111", Phase: admin.PhasePromoted}}
	})
	s := New(src, fleet{}, WithPollInterval(10*time.Millisecond), WithKeepAlive(50*time.Millisecond), WithGraphInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	evs := readEvents(resp.Body)

	var v vocab
	if err := json.Unmarshal([]byte(next(t, evs, eventVocab).data), &v); err != nil {
		t.Fatal(err)
	}
	if v.Phases[admin.PhaseRolledBack].Tone != toneBad || !v.Phases[admin.PhasePromoted].Done || v.States[admin.StateNacked] != toneBad {
		t.Errorf("vocab %+v", v)
	}
	var sv statusView
	if err := json.Unmarshal([]byte(next(t, evs, eventStatus).data), &sv); err != nil {
		t.Fatal(err)
	}
	rv := sv.Rollout
	if rv == nil || rv.Done || rv.WavesDone != 0 || len(rv.Waves) != 2 || rv.Waves[0].State != waveCurrent || rv.Waves[0].Target != "25%" ||
		rv.Waves[0].BakeSeconds != 2 || rv.Waves[0].Proxies != 1 || rv.Waves[1].State != wavePending {
		t.Errorf("rollout view %+v", rv)
	}
	if len(sv.Status.Rollout.Readings) != 1 || len(sv.Status.Proxies) != 1 {
		t.Errorf("status %+v", sv.Status)
	}
	if h := next(t, evs, eventHistory).data; !strings.Contains(h, "main@sha1:1111") {
		t.Errorf("history %s", h)
	}

	// A rollback: the status and the history change.
	src.set(func(st *admin.Status, h *[]admin.Rollout) {
		st.Rollout.Phase, st.Rollout.Reason = admin.PhaseRolledBack, "request-success-rate 50%: fail"
		st.Diagnostics = compiler.Diagnostics{{Code: "GM0201", Severity: compiler.SeverityError, Origin: sources.Origin{File: "policy/reviews.yaml", Line: 12}}}
		conditions.MarkFalse(st.Object(), meta.ReadyCondition, "ValidationFailed", "1 error")
		*h = append([]admin.Rollout{*st.Rollout}, *h...)
	})
	if err := json.Unmarshal([]byte(next(t, evs, eventStatus).data), &sv); err != nil {
		t.Fatal(err)
	}
	if sv.Rollout == nil || !sv.Rollout.Done || sv.Rollout.Tone != toneBad || sv.Rollout.Waves[0].State != waveStopped {
		t.Errorf("rolled back view %+v", sv.Rollout)
	}
	if !sv.Refused || len(sv.Status.Diagnostics) != 1 || sv.Status.Diagnostics[0].Origin.String() != "policy/reviews.yaml:12" {
		t.Errorf("refused %v, diagnostics %+v", sv.Refused, sv.Status.Diagnostics)
	}
	if h := next(t, evs, eventHistory).data; !strings.Contains(h, string(admin.PhaseRolledBack)) {
		t.Errorf("history %s", h)
	}
	next(t, evs, ":")

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	for range evs { // the stream ends
	}
	resp2, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream after Run returned: %d; want 503", resp2.StatusCode)
	}
}

// TestGraphEndpoint: GET /api/v1/graph scrapes the fleet (twice, cold) and
// answers the graph; the event stream carries it too.
func TestGraphEndpoint(t *testing.T) {
	proxy := metricsServer(t, client1Metrics)
	nodes := fleet{{Workload: nodemeta.Workload{ID: "client-1", Admin: proxy.URL}, Connected: true}}
	s := New(&source{}, nodes, WithGraphInterval(100*time.Millisecond), WithPollInterval(10*time.Millisecond))
	s.coldGap = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/graph")
	if err != nil {
		t.Fatal(err)
	}
	var g admin.Graph
	err = json.NewDecoder(resp.Body).Decode(&g)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 3 || g.Edges[0].Rate <= 0 || g.WindowSeconds <= 0 {
		t.Errorf("graph %+v; want 3 edges with rates", g)
	}

	stream, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if err := json.Unmarshal([]byte(next(t, readEvents(stream.Body), eventGraph).data), &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 3 {
		t.Errorf("graph event %+v", g)
	}
}

package reconciler

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gitmesh/gitmesh/api/admin"
)

// hookServer is a confirm-promotion webhook on loopback: it records when
// it is called and answers code, or hangs until the caller gives up.
type hookServer struct {
	*httptest.Server
	// entered receives (without blocking) on every call.
	entered chan struct{}

	// mu protects calls, code and hang.
	mu    sync.Mutex
	calls []time.Time
	code  int
	hang  bool
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{entered: make(chan struct{}, 1), code: http.StatusServiceUnavailable}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.calls = append(h.calls, time.Now())
		code, hang := h.code, h.hang
		h.mu.Unlock()
		select {
		case h.entered <- struct{}{}:
		default:
		}
		// Read the body first: only then does the server notice that the
		// client gave up, and cancel r's context.
		_, _ = io.Copy(io.Discard, r.Body)
		if hang {
			hangUntilDone(r)
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) set(code int, hang bool) {
	h.mu.Lock()
	h.code, h.hang = code, hang
	h.mu.Unlock()
}

func (h *hookServer) callTimes() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.calls...)
}

// gateRig is what a gate test case's proxies and webhook share.
type gateRig struct {
	hook *hookServer
	// scrapeHung receives (without blocking) when a hanging metrics
	// endpoint is called.
	scrapeHung chan struct{}
}

// servingMetrics is a proxy's admin endpoint that served ten more
// requests between two scrapes, all answered 503 when failing(id).
func servingMetrics(failing func(id string) bool) func(*gateRig, string) http.Handler {
	return func(_ *gateRig, id string) http.Handler {
		var served atomic.Int64
		code := "200"
		if failing(id) {
			code = "503"
		}
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintf(w, "# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"source\",response_code=%q} %d\n", code, served.Add(10))
		})
	}
}

// hangingMetrics is an admin endpoint that accepts the scrape and never
// answers.
func hangingMetrics(rig *gateRig, _ string) http.Handler {
	return http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case rig.scrapeHung <- struct{}{}:
		default:
		}
		hangUntilDone(r)
	})
}

// hangUntilDone blocks until the client of r gives up, or at most
// waitLimit, so that a client that never gives up fails its test (in the
// test's own wait) rather than hang the server's Close.
func hangUntilDone(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(waitLimit):
	}
}

// analysisPolicy bakes the canary wave for bake, checking the success
// rate every 50ms.
func analysisPolicy(bake string) func(string) string {
	return func(string) string {
		return `  waves:
  - {name: canary, percent: 25, bake: ` + bake + `}
  - {name: everyone, percent: 100}
  analysis:
    interval: 50ms
    failureThreshold: 2
    metrics:
    - {name: request-success-rate, min: 99}
`
	}
}

// confirmPolicy gates the second wave on a confirm-promotion webhook at
// hookURL, asked every 50ms. Its path is a secret, as a Slack or
// GitHub hook's is.
func confirmPolicy(hookURL string) string {
	return `  waves:
  - {name: canary, percent: 25, bake: 10ms}
  - {name: everyone, percent: 100}
  analysis: {interval: 50ms}
  webhooks:
  - {name: gate, type: confirm-promotion, url: "` + hookURL + `/hooks/s3cret-token", timeout: 2s}
`
}

// TestRolloutGates drives the analysis and the confirm-promotion gate of
// a real Reconciler with proxies' metrics endpoints and a webhook on
// loopback, healthy, failing and hung.
func TestRolloutGates(t *testing.T) {
	// The canary of four proxies: the first in fleet order.
	canaryID := fleetOrder([]string{"node-0", "node-1", "node-2", "node-3"})[0]
	tests := []struct {
		name    string
		rollout func(hookURL string) string
		metrics func(rig *gateRig, id string) http.Handler
		run     func(t *testing.T, h *harness, rig *gateRig)
	}{
		{
			name:    "a passing analysis promotes",
			rollout: analysisPolicy("100ms"),
			metrics: servingMetrics(func(string) bool { return false }),
			run: func(t *testing.T, h *harness, _ *gateRig) {
				rev := h.commit("v2")
				h.waitPhase(rev, admin.PhasePromoted)
				var passed dto.Metric
				if err := h.r.metrics.checks.WithLabelValues(string(admin.Pass)).Write(&passed); err != nil {
					t.Fatal(err)
				}
				if n := passed.GetCounter().GetValue(); n < 1 {
					t.Errorf("promoted after %v passing checks; want at least one", n)
				}
				h.waitFleetOn(rev)
			},
		},
		{
			name:    "a failing analysis rolls the canary wave back",
			rollout: analysisPolicy("1h"),
			metrics: servingMetrics(func(id string) bool { return id == canaryID }),
			run: func(t *testing.T, h *harness, _ *gateRig) {
				bad := h.commit("v2")
				s := h.waitPhase(bad, admin.PhaseRolledBack)
				if !strings.Contains(s.Rollout.Reason, "analysis failed 2 times in a row in canary") {
					t.Errorf("reason %q; want the failed analysis", s.Rollout.Reason)
				}
				if got := s.Rollout.Updated; len(got) != 0 && (len(got) != 1 || got[0] != canaryID) {
					t.Errorf("updated %v; want at most the canary %s", got, canaryID)
				}
				s = h.waitFleetOn(h.good)
				h.assertNotRetried(s.Rollout.ID, bad, ReasonRolloutFailed)
			},
		},
		{
			name:    "abort answers within a tick while a scrape target hangs",
			rollout: analysisPolicy("1h"),
			metrics: hangingMetrics,
			run: func(t *testing.T, h *harness, rig *gateRig) {
				bad := h.commit("v2")
				h.waitPhase(bad, admin.PhaseBaking)
				waitSignal(t, rig.scrapeHung, "a scrape to hang")
				h.abortWhileHung("a scrape")
			},
		},
		{
			name:    "confirm-promotion is asked once per analysis interval",
			rollout: confirmPolicy,
			run: func(t *testing.T, h *harness, rig *gateRig) {
				rev := h.commit("v2")
				deadline := time.Now().Add(waitLimit)
				for len(rig.hook.callTimes()) < 4 {
					if time.Now().After(deadline) {
						t.Fatalf("the webhook was called %d times in %s; want 4", len(rig.hook.callTimes()), waitLimit)
					}
					waitSignal(t, rig.hook.entered, "a confirm-promotion call")
				}
				calls := rig.hook.callTimes()
				for i := 1; i < len(calls); i++ {
					// 50ms apart, less the timer's and the scheduler's slack.
					if gap := calls[i].Sub(calls[i-1]); gap < 40*time.Millisecond {
						t.Errorf("calls %d and %d were %s apart; want one per 50ms interval", i, i+1, gap)
					}
				}
				s := h.r.Status()
				if s.Rollout.Revision != rev || !strings.Contains(s.Rollout.Waiting, "confirm-promotion webhook gate: it answered 503") {
					t.Errorf("rollout %s waiting %q; want it waiting for the gate", s.Rollout.Revision, s.Rollout.Waiting)
				}
				if b, _ := json.Marshal(s); strings.Contains(string(b), "s3cret-token") {
					t.Errorf("the status shows the webhook's secret path: %s", b)
				}
				rig.hook.set(http.StatusOK, false)
				h.waitPhase(rev, admin.PhasePromoted)
				h.waitFleetOn(rev)
			},
		},
		{
			name:    "abort answers within a tick while the confirm-promotion webhook hangs",
			rollout: confirmPolicy,
			run: func(t *testing.T, h *harness, rig *gateRig) {
				rig.hook.set(0, true)
				bad := h.commit("v2")
				waitSignal(t, rig.hook.entered, "a confirm-promotion call")
				s := h.abortWhileHung("the webhook")
				if s.Rollout.Revision != bad || s.Rollout.Phase != admin.PhaseAborted {
					t.Errorf("rollout of %s %s; want %s Aborted", s.Rollout.Revision, s.Rollout.Phase, bad)
				}
				if n := len(rig.hook.callTimes()); n != 1 {
					t.Errorf("the hung webhook was called %d times; want once (its call is in flight)", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rig := &gateRig{hook: newHookServer(t), scrapeHung: make(chan struct{}, 1)}
			opts := harnessOpts{rollout: tc.rollout(rig.hook.URL)}
			if tc.metrics != nil {
				opts.metrics = func(id string) http.Handler { return tc.metrics(rig, id) }
			}
			tc.run(t, newHarness(t, opts), rig)
		})
	}
}

// waitSignal waits for a signal on ch, at most waitLimit.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
	}
}

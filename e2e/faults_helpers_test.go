package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// faultPolicy is the RolloutPolicy of the fault tests: wave 1 (25%) bakes
// for bake, analysis every second on the success rate (plus metrics, YAML
// list items indented as under spec.analysis.metrics), two failed checks
// roll back; webhooks is a spec.webhooks section or "".
func faultPolicy(bake, metrics, webhooks string) string {
	return fmt.Sprintf(`apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default, namespace: default}
spec:
  waves:
  - {percent: 25, bake: %s}
  - {percent: 100, bake: 0s}
  analysis:
    interval: 1s
    failureThreshold: 2
    minRequests: 3
    metrics:
    - {name: request-success-rate, min: 99}
%s  progressDeadline: 2m
%s`, bake, metrics, webhooks)
}

// meshOptions adjust newFaultMesh.
type meshOptions struct {
	// repoURL maps the git server's URL to the one the controller is
	// given (e.g. through a faultnet.Switch).
	repoURL func(string) string
	// config edits the controller's Config before it starts.
	config func(*controller.Config)
	// release, if set, runs at cleanup before the controller is stopped:
	// it lets go of what the fault holds, so a controller stuck on it can
	// stop.
	release func()
}

// newFaultMesh is newCanaryMesh with options: it pushes the first revision
// (all to v1, rollout as the RolloutPolicy), starts the controller and four
// client proxies under load, and waits until all of them serve v1.
func newFaultMesh(t testing.TB, rollout string, o meshOptions) *canaryMesh {
	t.Helper()
	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad", http.StatusServiceUnavailable)
	}))
	t.Cleanup(bad.Close)
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	cm := &canaryMesh{repo: e2etest.NewGitRemote(t), v1: addr(v1), v2: addr(v2), b: addr(bad), xdsAddr: testnet.FreeAddr(t), stateDir: t.TempDir()}
	cm.repo.Push("reviews: all to v1", canaryPolicy(cm.v1, cm.v2, cm.b, allV1, rollout))
	repoURL := cm.repo.URL
	if o.repoURL != nil {
		repoURL = o.repoURL(repoURL)
	}
	cm.mesh = startControllerConfig(t, meshConfig(t, cm, repoURL, o))
	if o.release != nil {
		t.Cleanup(o.release)
	}
	outs := map[string]string{}
	for i := range 4 {
		id := fmt.Sprintf("client-%d", i+1)
		out, admin := startProxy(t, cm.xdsAddr, id)
		outs[id] = out
		cm.ids = append(cm.ids, id)
		cm.admins = append(cm.admins, admin)
	}
	cm.load = startLoad(t, outs, "reviews", 20*time.Millisecond)
	e2etest.Eventually(t, 30*time.Second, "every proxy serves v1", func() string {
		for _, id := range cm.ids {
			if got := cm.load.latest(id); got != "v1" {
				return fmt.Sprintf("%s answers %q", id, got)
			}
		}
		return ""
	})
	return cm
}

// meshConfig is the controller Config of cm's mesh: repoURL polled every
// 200ms, cm's xDS address and state directory, edited by o.config.
func meshConfig(t testing.TB, cm *canaryMesh, repoURL string, o meshOptions) controller.Config {
	cfg := controllerConfig(t, repoURL, cm.stateDir, 200*time.Millisecond)
	cfg.XDSAddr = cm.xdsAddr
	if o.config != nil {
		o.config(&cfg)
	}
	return cfg
}

// controllerStopTimeout bounds how long a cancelled controller may take to
// stop before a test reports it stuck (and moves on, leaking it).
const controllerStopTimeout = 15 * time.Second

// startControllerConfig starts a controller with cfg; it is stopped at
// cleanup within controllerStopTimeout (see stopWithin).
func startControllerConfig(t testing.TB, cfg controller.Config) *mesh {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	m := &mesh{t: t, ctrl: c, cancel: cancel}
	t.Cleanup(func() { m.stopWithin(controllerStopTimeout) })
	return m
}

// stopWithin cancels the controller and waits at most d for it to stop; a
// controller that does not is reported (something it runs ignores its
// context) rather than hanging the test binary. It may be called again.
func (m *mesh) stopWithin(d time.Duration) {
	m.cancel()
	done := make(chan error, 1)
	go func() { done <- m.ctrl.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			m.t.Errorf("controller: %v", err)
		}
	case <-time.After(d):
		m.t.Errorf("the controller did not stop within %s of being cancelled: a goroutine ignores its context (stuck on I/O?)", d)
	}
}

// adminResult is one admin API call as a user's CLI sees it.
type adminResult struct {
	code int
	msg  string
	took time.Duration
	err  error
}

// String formats r for failure messages.
func (r adminResult) String() string {
	if r.err != nil {
		return fmt.Sprintf("failed after %s: %v", r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("%d %q after %s", r.code, r.msg, r.took.Round(time.Millisecond))
}

// adminOp POSTs a rollout operation to the controller's admin API at addr
// with the bearer token, as `gitmesh <op>` does, and times the answer. The
// call gives up after 5s.
func adminOp(addr, token string, req admin.Request) adminResult {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/rollout", bytes.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return adminResult{took: time.Since(start), err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	var res struct{ Message, Error string }
	_ = json.Unmarshal(b, &res)
	return adminResult{code: resp.StatusCode, msg: res.Message + res.Error, took: took, err: err}
}

// firstServing waits until one of ids answers result after since and
// returns it with when it first did.
func firstServing(t testing.TB, l *loader, ids []string, result string, since time.Time, timeout time.Duration) (string, time.Time) {
	t.Helper()
	var id string
	var at time.Time
	e2etest.Eventually(t, timeout, fmt.Sprintf("a proxy answers %q", result), func() string {
		for _, cand := range ids {
			if a := l.firstAfter(cand, result, since); !a.IsZero() {
				id, at = cand, a
				return ""
			}
		}
		var latest []string
		for _, cand := range ids {
			latest = append(latest, cand+": "+l.latest(cand))
		}
		return strings.Join(latest, ", ")
	})
	return id, at
}

// servesWithin polls until proxy id answers result after since; it
// reports when, or false after timeout.
func servesWithin(l *loader, id, result string, since time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if at := l.firstAfter(id, result, since); !at.IsZero() {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		<-tick.C
	}
}

// rolloutSummary describes the controller's rollout for failure messages.
func rolloutSummary(m *mesh) string {
	ro := m.status().Rollout
	if ro == nil {
		return "no rollout"
	}
	return fmt.Sprintf("rollout #%d of %s: phase %s, wave %d, waiting %q, reason %q", ro.ID, ro.Revision, ro.Phase, ro.Wave+1, ro.Waiting, ro.Reason)
}

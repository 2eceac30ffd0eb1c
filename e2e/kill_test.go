//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// buildGitmesh builds the gitmesh binary into a temporary directory of t.
func buildGitmesh(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gitmesh")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gitmesh/gitmesh/cmd/gitmesh")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building gitmesh: %v\n%s", err, out)
	}
	return bin
}

// controllerProc is `gitmesh controller` running as a child process in its
// own process group, so a test can SIGKILL it as the kernel's OOM killer
// or a node failure would.
type controllerProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  string        // its stdout and stderr
}

// startControllerProc runs `bin controller args...`. It is killed at
// cleanup whatever happened, and its log is printed if the test failed.
func startControllerProc(t *testing.T, bin string, args ...string) *controllerProc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"controller", "--log-level", "info"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, killed with the test binary if that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting the controller: %v", err)
	}
	p := &controllerProc{t: t, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("controller pid %d log (tail):\n%s", cmd.Process.Pid, b)
		}
	})
	return p
}

// kill SIGKILLs the controller's process group and waits for it to exit.
func (p *controllerProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("controller pid %d did not exit within 10s of SIGKILL", p.cmd.Process.Pid)
	}
}

// wireRollout is the part of a rollout the admin API serves that these
// tests read (decoded from JSON, as any client would).
type wireRollout struct {
	ID       uint64
	Revision string
	Phase    admin.Phase
	Wave     int
	Waiting  string
	Reason   string
	Waves    []struct{ Nodes []string }
}

// wireStatus is the part of GET /api/v1/status these tests read.
type wireStatus struct {
	LastAppliedRevision string
	LastReconcileTime   time.Time
	Rollout             *wireRollout
	Proxies             []struct{ ID, State, Revision string }
}

// adminAPI reads and drives a controller through its admin API.
type adminAPI struct {
	addr, tokenFile string
}

func (a adminAPI) get(path string, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + a.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (a adminAPI) status() (wireStatus, error) {
	var st wireStatus
	err := a.get("/api/v1/status", &st)
	return st, err
}

func (a adminAPI) history() ([]wireRollout, error) {
	var h []wireRollout
	err := a.get("/api/v1/history?limit=0", &h)
	return h, err
}

func (a adminAPI) do(t *testing.T, req admin.Request) adminResult {
	t.Helper()
	tok, err := os.ReadFile(a.tokenFile)
	if err != nil {
		t.Fatalf("reading the admin token: %v", err)
	}
	return adminOp(a.addr, string(bytes.TrimSpace(tok)), req)
}

// waitRollout waits until the controller's rollout of sha is in phase.
func (a adminAPI) waitRollout(t *testing.T, sha string, phase admin.Phase, timeout time.Duration) wireRollout {
	t.Helper()
	var ro wireRollout
	e2etest.Eventually(t, timeout, fmt.Sprintf("rollout of %s %s", sha[:8], phase), func() string {
		st, err := a.status()
		if err != nil {
			return err.Error()
		}
		if st.Rollout == nil || !strings.HasSuffix(st.Rollout.Revision, sha) {
			return fmt.Sprintf("rollout %+v", st.Rollout)
		}
		ro = *st.Rollout
		if ro.Phase != phase {
			return fmt.Sprintf("phase %s, waiting %q, reason %q", ro.Phase, ro.Waiting, ro.Reason)
		}
		return ""
	})
	return ro
}

// killRig is a fleet driven by a controller process: wave 1 is client-1
// and laggard (an adsNode whose ACKs the test can hold back), wave 2
// client-2 and client-3; the clients are under steady load.
type killRig struct {
	bin, repoURL, stateDir, xdsAddr string
	api                             adminAPI
	proc                            *controllerProc
	repo                            *e2etest.GitRemote
	load                            *loader
	laggard                         *adsNode
	v1, v2, bad                     string
	policy                          string
}

// killPolicy: wave 1 by selector (wave=one) bakes for bake, then everyone.
func killPolicy(bake string) string {
	return fmt.Sprintf(`apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default, namespace: default}
spec:
  waves:
  - {name: canary, selector: {matchLabels: {wave: one}}, bake: %s}
  - {name: everyone, percent: 100}
  analysis:
    interval: 1s
    failureThreshold: 2
    minRequests: 3
    metrics:
    - {name: request-success-rate, min: 99}
  progressDeadline: 5m
`, bake)
}

var killClients = []string{"client-1", "client-2", "client-3"}

func newKillRig(t *testing.T, bin, bake string) *killRig {
	t.Helper()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad", http.StatusServiceUnavailable)
	}))
	t.Cleanup(bad.Close)
	r := &killRig{
		bin: bin, repo: e2etest.NewGitRemote(t), stateDir: t.TempDir(), xdsAddr: testnet.FreeAddr(t),
		v1: addr(e2etest.Backend(t, "v1")), v2: addr(e2etest.Backend(t, "v2")), bad: addr(bad), policy: killPolicy(bake),
	}
	r.repoURL = r.repo.URL
	r.api = adminAPI{addr: testnet.FreeAddr(t), tokenFile: filepath.Join(r.stateDir, "admin-token")}
	r.push("reviews: all to v1", allV1)
	r.start(t)

	outs := map[string]string{}
	for _, id := range killClients {
		labels := map[string]string{"app": "client"}
		if id == "client-1" {
			labels["wave"] = "one"
		}
		w := e2etest.RunProxy(t, r.xdsAddr, nodemeta.Workload{
			ID: id, Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar, Labels: labels, Outbound: testnet.FreeAddr(t),
		})
		outs[id] = w.Outbound
	}
	r.laggard = startADSNode(t, r.xdsAddr, nodemeta.Workload{
		ID: "laggard", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client", "wave": "one"}, Outbound: testnet.FreeAddr(t),
	})
	r.load = startLoad(t, outs, "reviews", 20*time.Millisecond)
	e2etest.Eventually(t, 30*time.Second, "every proxy serves v1 and the laggard is synced", func() string {
		for _, id := range killClients {
			if got := r.load.latest(id); got != "v1" {
				return fmt.Sprintf("%s answers %q", id, got)
			}
		}
		return r.synced("laggard")
	})
	return r
}

// push commits the policy with routes and returns the SHA.
func (r *killRig) push(msg, routes string) string {
	return r.repo.Push(msg, canaryPolicy(r.v1, r.v2, r.bad, routes, r.policy))
}

// start starts a controller process on the rig's state directory and
// addresses and waits until it serves.
func (r *killRig) start(t *testing.T) {
	t.Helper()
	r.proc = startControllerProc(t, r.bin, "--repo", r.repoURL, "--path", "policy", "--interval", "200ms",
		"--xds-addr", r.xdsAddr, "--admin-addr", r.api.addr, "--state-dir", r.stateDir)
	e2etest.Eventually(t, 30*time.Second, "the controller serves", func() string {
		select {
		case <-r.proc.done:
			t.Fatalf("the controller exited (see its log)")
		default:
		}
		var ok map[string]any
		if err := r.api.get("/api/v1/status", &ok); err != nil {
			return err.Error()
		}
		return ""
	})
}

// synced returns "" when proxy id is SYNCED, else its state.
func (r *killRig) synced(id string) string {
	st, err := r.api.status()
	if err != nil {
		return err.Error()
	}
	for _, p := range st.Proxies {
		if p.ID == id {
			if p.State != "SYNCED" {
				return fmt.Sprintf("%s is %s", id, p.State)
			}
			return ""
		}
	}
	return id + " not connected"
}

// historyIntact checks that every rollout of before is in after, with the
// same revision and, if it had finished, the same phase.
func historyIntact(t *testing.T, before, after []wireRollout) {
	t.Helper()
	byID := map[uint64]wireRollout{}
	for _, ro := range after {
		byID[ro.ID] = ro
	}
	for _, ro := range before {
		got, ok := byID[ro.ID]
		switch {
		case !ok:
			t.Errorf("history lost rollout #%d (%s %s) across the kill", ro.ID, ro.Revision, ro.Phase)
		case got.Revision != ro.Revision:
			t.Errorf("history: rollout #%d was of %s, now of %s", ro.ID, ro.Revision, got.Revision)
		case ro.Phase.Done() && got.Phase != ro.Phase:
			t.Errorf("history: finished rollout #%d was %s, now %s", ro.ID, ro.Phase, got.Phase)
		}
	}
}

// TestControllerKilledMidRollout kills the controller process (SIGKILL, no
// chance to save anything) in each phase of a rollout and restarts it on
// the same --state-dir: no proxy regresses to an older version than it
// ran, proxies outside the wave do not get the revision early, a
// rolled-back revision is not retried, and history is intact.
func TestControllerKilledMidRollout(t *testing.T) {
	bin := buildGitmesh(t)

	t.Run("progressing", func(t *testing.T) {
		r := newKillRig(t, bin, "1h")
		r.laggard.hold() // wave 1 cannot finish: the laggard does not ACK
		pushed := time.Now()
		sha := r.push("reviews: all to v2", allV2)
		switched, ok := servesWithin(r.load, "client-1", "v2", pushed, 30*time.Second)
		if !ok {
			t.Fatalf("client-1 (wave 1) never served v2")
		}
		ro := r.api.waitRollout(t, sha, admin.PhaseProgressing, 10*time.Second)
		before, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}

		r.proc.kill()
		restarted := time.Now()
		r.start(t)
		ro2 := r.api.waitRollout(t, sha, admin.PhaseProgressing, 30*time.Second)
		if ro2.ID != ro.ID {
			t.Errorf("after the restart rollout #%d; want the same rollout #%d resumed", ro2.ID, ro.ID)
		}
		r.laggard.release()
		r.api.waitRollout(t, sha, admin.PhaseBaking, 30*time.Second)
		r.checkNoRegression(t, "v2", switched, restarted)
		after, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}
		historyIntact(t, before, after)
		r.promoteAll(t, sha, "v2")
	})

	t.Run("baking", func(t *testing.T) {
		r := newKillRig(t, bin, "1h")
		pushed := time.Now()
		sha := r.push("reviews: all to v2", allV2)
		ro := r.api.waitRollout(t, sha, admin.PhaseBaking, 30*time.Second)
		switched, ok := servesWithin(r.load, "client-1", "v2", pushed, 10*time.Second)
		if !ok {
			t.Fatalf("client-1 (wave 1) never served v2")
		}
		before, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}

		r.proc.kill()
		restarted := time.Now()
		r.start(t)
		ro2 := r.api.waitRollout(t, sha, admin.PhaseBaking, 30*time.Second)
		if ro2.ID != ro.ID {
			t.Errorf("after the restart rollout #%d; want the same rollout #%d resumed", ro2.ID, ro.ID)
		}
		e2etest.Eventually(t, 20*time.Second, "the laggard synced on the revision", func() string { return r.synced("laggard") })
		r.checkNoRegression(t, "v2", switched, restarted)
		after, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}
		historyIntact(t, before, after)
		r.promoteAll(t, sha, "v2")
	})

	t.Run("rolling back", func(t *testing.T) {
		r := newKillRig(t, bin, "1h")
		pushed := time.Now()
		sha := r.push("reviews: to a broken backend", toBad)
		r.api.waitRollout(t, sha, admin.PhaseBaking, 30*time.Second)
		// The laggard ran the bad revision; it holds back its ACK of the
		// rollback, so the rollback is still under way when the kill comes.
		r.laggard.hold()
		r.api.waitRollout(t, sha, admin.PhaseRolledBack, 30*time.Second)
		e2etest.Eventually(t, 10*time.Second, "the laggard was sent the last good version", func() string {
			if r.laggard.pendingCount() == 0 {
				return "nothing pending; " + r.synced("laggard")
			}
			return ""
		})
		bad, ok := servesWithin(r.load, "client-1", "status 503", pushed, time.Second)
		if !ok {
			t.Fatalf("client-1 (wave 1) never served the bad revision")
		}
		before, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}

		r.proc.kill()
		restarted := time.Now()
		r.start(t)
		r.laggard.release()
		e2etest.Eventually(t, 20*time.Second, "the laggard synced on the last good version", func() string { return r.synced("laggard") })
		// Back on v1 after it served the bad revision: before the kill if
		// the rollback had reached it, else once the new controller rolls
		// it back (answers between pushed and bad were v1 too).
		back, ok := servesWithin(r.load, "client-1", "v1", bad, 20*time.Second)
		if !ok {
			t.Fatalf("client-1 never went back to v1")
		}
		// Two seconds of polls later, the rolled-back revision is still not
		// retried.
		e2etest.Eventually(t, 20*time.Second, "polls after the restart", func() string {
			st, err := r.api.status()
			if err != nil {
				return err.Error()
			}
			if st.LastReconcileTime.Before(restarted.Add(2 * time.Second)) {
				return "last poll at " + st.LastReconcileTime.Format(time.RFC3339Nano)
			}
			return ""
		})
		h, err := r.api.history()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ro := range h {
			if strings.HasSuffix(ro.Revision, sha) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("history holds %d rollouts of the rolled-back %s; want 1 (it was retried after the restart)", n, sha[:8])
		}
		for _, id := range killClients {
			if at := r.load.firstAfter(id, "status 503", maxTime(back, restarted)); !at.IsZero() {
				t.Errorf("proxy %s served the rolled-back revision again at %s", id, at.Format(time.RFC3339Nano))
			}
		}
		historyIntact(t, before, h)
	})
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkNoRegression: client-1 (wave 1), which served want from switched
// on, never served anything else since; the wave-2 clients never served
// want.
func (r *killRig) checkNoRegression(t *testing.T, want string, switched, restarted time.Time) {
	t.Helper()
	for _, other := range []string{"v1", "status 503", "error"} {
		if at := r.load.firstAfter("client-1", other, switched); !at.IsZero() && other != want {
			t.Errorf("client-1 (wave 1) ran %s from %s, then answered %q at %s (restart at %s): it regressed", want, switched.Format(time.RFC3339Nano), other, at.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano))
		}
	}
	for _, id := range killClients[1:] {
		if at := r.load.first(id, want); !at.IsZero() {
			t.Errorf("%s (wave 2) served %s at %s, before its wave", id, want, at.Format(time.RFC3339Nano))
		}
	}
}

// promoteAll promotes the rollout of sha to every proxy and waits until
// every client serves want.
func (r *killRig) promoteAll(t *testing.T, sha, want string) {
	t.Helper()
	if res := r.api.do(t, admin.Request{Op: admin.OpPromote, Full: true}); res.err != nil || res.code != http.StatusOK {
		t.Fatalf("promote --full: %s", res)
	}
	r.api.waitRollout(t, sha, admin.PhasePromoted, 20*time.Second)
	e2etest.Eventually(t, 20*time.Second, "every client serves "+want, func() string {
		for _, id := range killClients {
			if got := r.load.latest(id); got != want {
				return fmt.Sprintf("%s answers %q", id, got)
			}
		}
		return ""
	})
}

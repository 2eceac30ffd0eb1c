package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// vocabCanaryWaves sends a revision to the proxies labelled canary=yes
// first (the gateway), then to everyone.
const vocabCanaryWaves = `  waves:
  - name: canary
    selector: {matchLabels: {canary: "yes"}}
    bake: 100ms
  - {name: everyone, percent: 100}
`

// vocabQuickPolicy promotes after a 100ms bake.
const vocabQuickPolicy = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
` + vocabCanaryWaves + `  progressDeadline: 20s
`

// vocabStuckPolicy never sees the requests its analysis needs, so a wave
// waits for a passing analysis until its 2s progress deadline fails it.
const vocabStuckPolicy = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
` + vocabCanaryWaves + `  analysis:
    interval: 100ms
    minRequests: 1000000
    metrics:
    - {name: request-success-rate, min: 99}
  progressDeadline: 2s
`

// vocabGateway serves reviews.example.com on httpPort; with https, also
// on httpsPort with a certificate that does not exist on the gateway's
// host, which the compiler cannot know and the gateway NACKs.
func vocabGateway(httpPort, httpsPort string, https bool) string {
	s := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %s, name: http, protocol: HTTP}
    hosts: ["reviews.example.com"]
`, httpPort)
	if https {
		s += fmt.Sprintf(`  - port: {number: %s, name: https, protocol: HTTPS}
    hosts: ["reviews.example.com"]
    tls: {mode: SIMPLE, serverCertificate: /nonexistent/gitmesh-test/cert.pem, privateKey: /nonexistent/gitmesh-test/key.pem}
`, httpsPort)
	}
	return s + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge}
spec:
  hosts: ["reviews.example.com"]
  gateways: [edge]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
}

// TestOneVocabulary drives a real controller with real proxies through
// every outcome (Promoted, Failed at the progress deadline, Aborted by a
// person, RolledBack on a NACK, ManualRollback, Refused) and checks that
// status (text and JSON), history (text and JSON) and the
// gitmesh_rollouts_total metric name each one with the same string, and
// that `status --watch --revision` exits 0 for the promoted rollout and 1
// for the others, having waited for them to settle.
func TestOneVocabulary(t *testing.T) {
	repo := newCLIRepo(t)
	httpAddr, httpsAddr := testnet.FreeAddr(t), testnet.FreeAddr(t)
	files := map[string]string{
		"services.yaml": cliServices,
		"reviews.yaml":  cliReviews,
		"rollout.yaml":  vocabQuickPolicy,
		"gateway.yaml":  vocabGateway(e2etest.PortOf(httpAddr), e2etest.PortOf(httpsAddr), false),
	}
	first := repo.commit("init", files)

	ctx, cancel := context.WithCancel(context.Background())
	stateDir := t.TempDir()
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: repo.dir, Path: "policy", Interval: 50 * time.Millisecond,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", StateDir: stateDir,
		Logger: e2etest.Logger(t).With("component", "controller"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err, ok := e2etest.WaitDone(t, "controller", waitChan(c.Wait), 15*time.Second); ok && err != nil {
			t.Error(err)
		}
	})
	e2etest.RunProxy(t, c.XDSAddr, nodemeta.Workload{
		ID: "gateway-1", Service: "gateway", Namespace: "default", Role: nodemeta.RoleGateway,
		Labels: map[string]string{"istio": "ingressgateway", "canary": "yes"}, Gateway: []string{httpAddr, httpsAddr},
	})
	e2etest.RunProxy(t, c.XDSAddr, nodemeta.Workload{
		ID: "client-1", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: testnet.FreeAddr(t),
	})
	ctrl := "--controller=http://" + c.AdminAddr
	token := "--token-file=" + filepath.Join(stateDir, "admin-token")
	t.Setenv("GITMESH_TOKEN", "")

	waitStatus(t, ctrl, "two proxies on the first revision", func(st admin.Status) bool {
		return st.LastAppliedRevision == first && len(st.Proxies) == 2 && st.Proxies[0].State == admin.StateSynced && st.Proxies[1].State == admin.StateSynced
	})

	// watch runs status --watch for rev, in the background from the
	// moment of the commit, and returns its exit code and output.
	watch := func(rev string) func() (int, string) {
		done := make(chan [2]string, 1)
		go func() {
			out, code := runCLI(t, "status", ctrl, "--watch", "--interval=20ms", "--timeout=30s", "--revision="+rev)
			done <- [2]string{strconv.Itoa(code), out}
		}()
		return func() (int, string) {
			r := <-done
			code, _ := strconv.Atoi(r[0])
			return code, r[1]
		}
	}
	wantWatch := func(wait func() (int, string), wantCode int, wantPhase admin.Phase) {
		t.Helper()
		code, out := wait()
		if code != wantCode || !strings.Contains(out, string(wantPhase)) || strings.Contains(out, "\033") {
			t.Errorf("status --watch: exit %d, output:\n%s\nwant exit %d, %s named, and no escape sequences (not a terminal)", code, out, wantCode, wantPhase)
		}
		if blocks := strings.Count(out, "Revision:"); blocks < 2 && wantPhase != admin.PhaseRefused {
			t.Errorf("status --watch printed %d status blocks; want it to have watched the rollout (at least 2)", blocks)
		}
	}
	type step struct {
		name  string
		phase admin.Phase
		rev   string
	}
	var steps []step

	// Promoted: reviews to v2 under the quick policy, which the commit
	// replaces with the stuck one for the later pushes.
	files["reviews.yaml"] = strings.Replace(cliReviews, "subset: v1}", "subset: v2}", 1)
	files["rollout.yaml"] = vocabStuckPolicy
	rev := repo.commit("reviews to v2", files)
	wantWatch(watch(rev), 0, admin.PhasePromoted)
	steps = append(steps, step{"promoted", admin.PhasePromoted, rev})
	checkRollout(t, ctrl, waitRollout(t, ctrl, rev, admin.PhasePromoted), admin.PhasePromoted)

	// Failed: the analysis never gets its requests.
	files["reviews.yaml"] = cliReviews
	rev = repo.commit("reviews back to v1", files)
	wantWatch(watch(rev), 1, admin.PhaseFailed)
	steps = append(steps, step{"failed", admin.PhaseFailed, rev})
	checkRollout(t, ctrl, waitRollout(t, ctrl, rev, admin.PhaseFailed), admin.PhaseFailed)

	// Aborted: a person stops the next one while it bakes.
	files["reviews.yaml"] = "# again\n" + cliReviews
	rev = repo.commit("reviews back to v1, again", files)
	w := watch(rev)
	waitRollout(t, ctrl, rev, admin.PhaseBaking)
	if out, code := runCLI(t, "abort", ctrl, token); code != 0 {
		t.Fatalf("abort: exit %d: %s", code, out)
	}
	wantWatch(w, 1, admin.PhaseAborted)
	steps = append(steps, step{"aborted", admin.PhaseAborted, rev})
	checkRollout(t, ctrl, waitRollout(t, ctrl, rev, admin.PhaseAborted), admin.PhaseAborted)

	// RolledBack: the gateway, in the canary wave, NACKs a certificate it
	// does not have.
	files["gateway.yaml"] = vocabGateway(e2etest.PortOf(httpAddr), e2etest.PortOf(httpsAddr), true)
	rev = repo.commit("edge: HTTPS", files)
	wantWatch(watch(rev), 1, admin.PhaseRolledBack)
	steps = append(steps, step{"rolled back", admin.PhaseRolledBack, rev})
	ro := waitRollout(t, ctrl, rev, admin.PhaseRolledBack)
	checkRollout(t, ctrl, ro, admin.PhaseRolledBack)
	if !strings.Contains(ro.Reason, "gateway-1 NACKed") {
		t.Errorf("rolled back because %q; want the gateway's NACK", ro.Reason)
	}

	// ManualRollback: to the first revision, by its history id.
	out, code := runCLI(t, "rollback", "--to", "1", ctrl, token)
	if code != 0 || !strings.Contains(out, "history #1") {
		t.Fatalf("rollback --to 1: exit %d: %s; want it to say it matched history #1", code, out)
	}
	steps = append(steps, step{"manual rollback", admin.PhaseManualRollback, first})
	checkRollout(t, ctrl, waitRollout(t, ctrl, first, admin.PhaseManualRollback), admin.PhaseManualRollback)

	// Refused: a commit that does not validate.
	files["bad.yaml"] = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\nspec:\n  hosts: [nope]\n  http:\n  - route:\n    - destination: {host: nope}\n"
	rev = repo.commit("bad", files)
	wantWatch(watch(rev), 1, admin.PhaseRefused)
	steps = append(steps, step{"refused", admin.PhaseRefused, rev})

	// History, text and JSON, and the metric agree with what status said.
	var hist []admin.Rollout
	out, code = runCLI(t, "history", ctrl, "-o", "json")
	if err := json.Unmarshal([]byte(out), &hist); code != 0 || err != nil {
		t.Fatalf("history -o json: exit %d, %v: %s", code, err, out)
	}
	text, code := runCLI(t, "history", ctrl)
	if code != 0 {
		t.Fatalf("history: exit %d: %s", code, text)
	}
	counts := rolloutsByOutcome(t, c.AdminAddr)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var rec *admin.Rollout
			for i := range hist {
				if hist[i].Revision == s.rev && hist[i].Phase == s.phase {
					rec = &hist[i]
				}
			}
			if rec == nil {
				t.Fatalf("history -o json has no %s record of %s: %+v", s.phase, s.rev, hist)
			}
			row := historyRow(text, rec.ID)
			if len(row) < 4 || row[1] != s.rev || row[3] != string(s.phase) {
				t.Errorf("history row #%d = %q; want %s with outcome %s", rec.ID, row, s.rev, s.phase)
			}
			if counts[string(s.phase)] < 1 {
				t.Errorf("gitmesh_rollouts_total{outcome=%q} = %v; want at least 1 (all: %v)", s.phase, counts[string(s.phase)], counts)
			}
			if s.phase == admin.PhaseRefused && (len(rec.Diagnostics) == 0 || rec.Diagnostics[0].Origin.Line == 0 || !strings.Contains(strings.Join(row, " "), "bad.yaml:")) {
				t.Errorf("refused record: diagnostics %v, row %q; want the first diagnostic with file:line", rec.Diagnostics, row)
			}
		})
	}
	for _, o := range []string{"Promoted", "RolledBack", "Failed", "Aborted", "ManualRollback", "Refused"} {
		if _, ok := counts[o]; !ok {
			t.Errorf("gitmesh_rollouts_total has no outcome %q: %v", o, counts)
		}
	}
}

// checkRollout checks that status, text and JSON, shows ro with phase.
func checkRollout(t *testing.T, ctrl string, ro *admin.Rollout, phase admin.Phase) {
	t.Helper()
	if ro == nil || ro.Phase != phase {
		t.Fatalf("status -o json rollout %+v; want phase %s", ro, phase)
	}
	text, code := runCLI(t, "status", ctrl)
	want := fmt.Sprintf("Rollout #%d: %s  %s", ro.ID, ro.Revision, phase)
	if code != 0 || !strings.Contains(text, want) {
		t.Errorf("status: exit %d:\n%s\nwant a line starting %q", code, text, want)
	}
	if n := ro.WaveNumber(); n > 0 && !strings.Contains(text, fmt.Sprintf("%s  wave %d/%d", want, n, len(ro.Waves))) {
		t.Errorf("status:\n%s\nwant wave %d/%d, as JSON \"wave\": %d says", text, n, len(ro.Waves), n)
	}
}

// waitRollout waits for status to show rev's rollout in phase.
func waitRollout(t *testing.T, ctrl, rev string, phase admin.Phase) *admin.Rollout {
	t.Helper()
	return waitStatus(t, ctrl, fmt.Sprintf("rollout of %s %s", rev, phase), func(st admin.Status) bool {
		return st.Rollout != nil && st.Rollout.Revision == rev && st.Rollout.Phase == phase
	}).Rollout
}

// waitStatus polls status -o json until cond holds, for at most 30s.
func waitStatus(t *testing.T, ctrl, what string, cond func(admin.Status) bool) admin.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := runCLI(t, "status", ctrl, "-o", "json")
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
			t.Fatalf("status -o json: exit %d, %v: %s", code, err, out)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; ready %+v, rollout %+v", what, st.Ready(), st.Rollout)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
}

// historyRow returns the fields of history's text row with id.
func historyRow(text string, id uint64) []string {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == strconv.FormatUint(id, 10) {
			return f
		}
	}
	return nil
}

// rolloutsByOutcome scrapes gitmesh_rollouts_total from the admin server.
func rolloutsByOutcome(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, `gitmesh_rollouts_total{outcome="`)
		if !ok {
			continue
		}
		outcome, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[outcome] = v
	}
	return out
}

// cliRepo is a Git repository the tests commit policy to with the git CLI.
type cliGitRepo struct {
	t   *testing.T
	dir string
}

// newCLIRepo makes an empty repository on branch main (skipping the test
// without git).
func newCLIRepo(t *testing.T) *cliGitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	r := &cliGitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *cliGitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@gitmesh.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@gitmesh.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files under policy/ (removing the others) and commits
// them, returning the revision as the controller names it.
func (r *cliGitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	dir := filepath.Join(r.dir, "policy")
	if err := os.RemoveAll(dir); err != nil {
		r.t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return "main@sha1:" + r.git("rev-parse", "HEAD")
}

// waitChan runs f in a goroutine and delivers its result.
func waitChan(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

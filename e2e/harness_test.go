// Package e2e holds gitmesh's end-to-end tests: a real git server on
// loopback, the controller, bundled proxies and httptest backends, all in
// this process, driven with the git CLI as a user would.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/gittestserver"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/proxy"
)

// testLogger logs to t when GITMESH_E2E_LOG is set (to debug, info, warn
// or error), else discards.
func testLogger(t testing.TB) *slog.Logger {
	lvl := os.Getenv("GITMESH_E2E_LOG")
	if lvl == "" {
		return slog.New(slog.DiscardHandler)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// gitRemote is a repository on a loopback git server plus a local clone
// that the test edits and pushes with the git CLI.
type gitRemote struct {
	t     testing.TB
	URL   string // the server's repository URL
	Clone string // the local work tree
}

// newGitRemote starts a git HTTP server and pushes an empty main branch.
func newGitRemote(t testing.TB) *gitRemote {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the git CLI is required: %v", err)
	}
	srv, err := gittestserver.NewTempGitServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.AutoCreate()
	if err := srv.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.StopHTTP()
		os.RemoveAll(srv.Root())
	})
	g := &gitRemote{t: t, URL: srv.HTTPAddress() + "/mesh/policy.git", Clone: filepath.Join(t.TempDir(), "work")}
	g.git("init", "-q", "-b", "main", g.Clone)
	g.git("-C", g.Clone, "remote", "add", "origin", g.URL)
	return g
}

func (g *gitRemote) git(args ...string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gitCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@gitmesh.invalid",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@gitmesh.invalid",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// push writes files (path -> content; "" deletes), commits and pushes main.
// It returns the new commit's SHA.
func (g *gitRemote) push(msg string, files map[string]string) string {
	g.t.Helper()
	for p, content := range files {
		full := filepath.Join(g.Clone, p)
		if content == "" {
			if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
				g.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git("-C", g.Clone, "add", "-A")
	g.git("-C", g.Clone, "commit", "-q", "--allow-empty", "-m", msg)
	g.git("-C", g.Clone, "push", "-q", "origin", "main")
	return g.git("-C", g.Clone, "rev-parse", "HEAD")
}

// backend starts an HTTP server answering its name.
func backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// freeAddr returns a loopback address for a server that binds it later
// (see testnet.FreeAddr).
func freeAddr(t testing.TB) string { return testnet.FreeAddr(t) }

// mesh is a running controller with its proxies.
type mesh struct {
	t      testing.TB
	ctrl   *controller.Controller
	cancel context.CancelFunc
}

// startController starts a controller against repoURL polling every interval.
func startController(t testing.TB, repoURL, stateDir string, interval time.Duration, xdsAddr string) *mesh {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if xdsAddr == "" {
		xdsAddr = "127.0.0.1:0"
	}
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: repoURL, Path: "policy", Interval: interval,
		XDSAddr: xdsAddr, AdminAddr: "127.0.0.1:0", StateDir: stateDir,
		Logger: testLogger(t).With("component", "controller"),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	m := &mesh{t: t, ctrl: c, cancel: cancel}
	t.Cleanup(m.stop)
	return m
}

// stop stops the controller (proxies keep running), waiting at most
// controllerStopTimeout for it.
func (m *mesh) stop() { m.stopWithin(controllerStopTimeout) }

// runProxy runs a bundled proxy announcing w until the test ends. An
// empty Admin gets a free address.
func runProxy(t testing.TB, xdsAddr string, w nodemeta.Workload) nodemeta.Workload {
	t.Helper()
	if w.Admin == "" {
		w.Admin = freeAddr(t)
	}
	p, err := proxy.New(proxy.Config{XDSAddr: xdsAddr, Workload: w, Logger: testLogger(t).With("component", "proxy", "node", w.ID)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err, ok := waitDone(t, "proxy "+w.ID, done, stopTimeout); ok && err != nil {
			t.Errorf("proxy %s: %v", w.ID, err)
		}
	})
	return w
}

// startProxy runs a client sidecar with an outbound listener until the test
// ends and returns its outbound and admin addresses.
func startProxy(t testing.TB, xdsAddr, id string) (outbound, admin string) {
	t.Helper()
	w := runProxy(t, xdsAddr, nodemeta.Workload{
		ID: id, Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: freeAddr(t),
	})
	return w.Outbound, w.Admin
}

// portOf returns the port of an address, a URL or an httptest server.
func portOf(v any) string {
	var s string
	switch x := v.(type) {
	case *httptest.Server:
		// Never fmt.Sprint a server: that reads every field of it,
		// racing with its goroutines (go test -race reports it).
		s = x.URL
	case string:
		s = x
	default:
		s = fmt.Sprint(v)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	_, port, _ := net.SplitHostPort(s)
	return port
}

// status reads the controller's status through its admin API.
func (m *mesh) status() admin.Status {
	return m.ctrl.Reconciler.Status()
}

// split sends n requests for host through the outbound listener and counts
// the answers (see answer).
func split(outbound, host string, n int) map[string]int {
	client := &http.Client{Timeout: 5 * time.Second}
	return tally(n, func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+outbound+"/", nil)
		req.Host = host
		return client.Do(req)
	})
}

// splitWith sends n GETs to target with client and counts the answers.
func splitWith(client *http.Client, target string, n int) map[string]int {
	return tally(n, func() (*http.Response, error) { return client.Get(target) })
}

// tally calls send n times and counts the answers.
func tally(n int, send func() (*http.Response, error)) map[string]int {
	got := map[string]int{}
	for range n {
		got[answer(send())]++
	}
	return got
}

// answer reads and classifies a response: its body when the status is
// 200, "status N" otherwise, "error: ..." when the request failed.
func answer(resp *http.Response, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	return string(b)
}

// eventually polls cond every 20ms until it returns "" or timeout passes,
// then fails with the last reason.
// Deadlines of the harness: every wait has one, so a test whose feature
// does not work fails, naming what it waited for, instead of hanging
// until go test's -timeout kills the whole binary.
const (
	// stopTimeout bounds how long a cancelled proxy or test server may
	// take to stop.
	stopTimeout = 10 * time.Second
	// gitCommandTimeout bounds one git CLI command (a push to the
	// loopback server takes milliseconds).
	gitCommandTimeout = time.Minute
	// httpTimeout bounds one HTTP call of a test to a proxy or the
	// controller.
	httpTimeout = 5 * time.Second
)

// waitDone waits at most d for done to deliver (or be closed) and returns
// what it delivered. After d it reports that what did not stop (something
// it runs ignores its context) and returns false, rather than hang.
func waitDone[T any](t testing.TB, what string, done <-chan T, d time.Duration) (T, bool) {
	t.Helper()
	select {
	case v := <-done:
		return v, true
	case <-time.After(d):
		t.Errorf("%s did not stop within %s of being cancelled", what, d)
		var zero T
		return zero, false
	}
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		<-tick.C
	}
}

func proxiedClient(proxyURL *url.URL) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
}

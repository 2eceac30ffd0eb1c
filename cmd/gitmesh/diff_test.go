package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/review"
)

// cliTimeout bounds one in-process CLI run: a command that waits on a
// controller that never answers fails the test instead of hanging it.
const cliTimeout = time.Minute

// runCLI runs the gitmesh command in-process, within cliTimeout, and
// returns its output and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code := 0
	if err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if ee == nil || ee.err != nil {
			out.WriteString("error: " + err.Error() + "\n")
		}
	}
	return out.String(), code
}

const (
	cliServices = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  resolution: STATIC
  workloadSelector:
    labels: {app: reviews}
`
	cliReviews = `# reviews routing
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
)

// cliRepo makes a repository with the git CLI: main has "init" then
// "to v2"; branch "broken" has invalid YAML, branch "bad" an undefined
// subset, branch "comment" a comment edit only.
func cliRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@gitmesh.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@gitmesh.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "policy"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "policy", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(msg string) {
		git("add", "-A")
		git("commit", "-q", "-m", msg)
	}
	git("init", "-q", "-b", "main")
	write("services.yaml", cliServices)
	write("reviews.yaml", cliReviews)
	commit("init")
	write("reviews.yaml", strings.Replace(cliReviews, "subset: v1}", "subset: v2}", 1))
	commit("to v2")
	git("checkout", "-q", "-b", "broken")
	write("reviews.yaml", cliReviews+"  - bad: [\n")
	commit("broken")
	git("checkout", "-q", "-b", "bad", "main")
	write("reviews.yaml", strings.Replace(cliReviews, "subset: v1}", "subset: v7}", 1))
	commit("bad subset")
	git("checkout", "-q", "-b", "comment", "main")
	write("reviews.yaml", strings.Replace(cliReviews, "subset: v1}", "subset: v2}", 1)+"# a trailing comment\n")
	commit("comment")
	git("checkout", "-q", "main")
	return dir
}

func TestDiffExitCodes(t *testing.T) {
	dir := cliRepo(t)
	tests := []cliCase{
		{name: "no change", args: []string{"--base", "main", "--head", "main"}, wantCode: 0, wantOut: "result: no changes"},
		{name: "comment only", args: []string{"--base", "main", "--head", "comment"}, wantCode: 0},
		{name: "changes", args: []string{"--base", "HEAD~1", "--head", "HEAD"}, wantCode: 1, wantOut: "v1 100% -> v2 100%"},
		{name: "changes, exit-code=false", args: []string{"--base", "HEAD~1", "--head", "HEAD", "--exit-code=false"}, wantCode: 0},
		{name: "work tree by default", args: []string{"--base", "main"}, wantCode: 0, wantOut: "head: worktree"},
		{name: "broken head", args: []string{"--base", "main", "--head", "broken"}, wantCode: 2, wantOut: "GM0101"},
		{name: "broken head, exit-code=false", args: []string{"--base", "main", "--head", "broken", "--exit-code=false"}, wantCode: 0},
		{name: "new analyzer error", args: []string{"--base", "main", "--head", "bad"}, wantCode: 2, wantOut: "GM0201"},
		{name: "new analyzer error, exit-code=false", args: []string{"--base", "main", "--head", "bad", "--exit-code=false"}, wantCode: 0},
		{name: "fixed analyzer error", args: []string{"--base", "bad", "--head", "main"}, wantCode: 1, wantOut: "fixed: "},
		{name: "markdown via --format", args: []string{"--base", "HEAD~1", "--head", "HEAD", "--format", "markdown"}, wantCode: 1, wantOut: review.MarkdownMarker},
		{name: "json", args: []string{"--base", "HEAD~1", "--head", "HEAD", "-o", "json"}, wantCode: 1, wantOut: `"exitCode": 1`},
		{name: "proxy class", args: []string{"--base", "HEAD~1", "--head", "HEAD", "--proxy-class", "role=sidecar,service=reviews"}, wantCode: 1, wantOut: "1 of 1 proxy classes"},
		{name: "gateway class", args: []string{"--base", "HEAD~1", "--head", "HEAD", "--proxy-class", "role=gateway"}, wantCode: 1, wantOut: "0 of 1 proxy classes"},
		{name: "unknown ref", args: []string{"--base", "nope", "--head", "main"}, wantCode: 2},
		{name: "no base", args: []string{"--head", "main"}, wantCode: 2},
		{name: "head and worktree", args: []string{"--base", "main", "--head", "main", "--worktree"}, wantCode: 2},
		{name: "bad format", args: []string{"--base", "main", "-o", "yaml"}, wantCode: 2},
		{name: "bad proxy class", args: []string{"--base", "main", "--proxy-class", "role=router"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"diff", "--repo", dir, "--path", "policy"}, tt.args...)
			out, code := runCLI(t, args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d; want %d\n%s", code, tt.wantCode, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
		})
	}
}

func TestDiffWorktreeChange(t *testing.T) {
	dir := cliRepo(t)
	p := filepath.Join(dir, "policy", "reviews.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(b, []byte("subset: v2}"), []byte("subset: v1}"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, "diff", "--repo", dir, "--path", "policy", "--base", "main", "--worktree")
	if code != 1 || !strings.Contains(out, "v2 100% -> v1 100%") {
		t.Errorf("exit code %d, output:\n%s\nwant 1 and the route change", code, out)
	}
}

// fakeController serves GET /api/v1/status as a controller's admin API does.
func fakeController(t *testing.T, st admin.Status) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/status" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDiffLive(t *testing.T) {
	dir := cliRepo(t)
	sha := gitRevParse(t, dir, "main~1")
	url := fakeController(t, admin.Status{
		LastAppliedRevision: "main@sha1:" + sha,
		Proxies: []admin.ProxyStatus{
			{ID: "reviews-1", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
			{ID: "reviews-2", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
			{ID: "frontend-1", Service: "frontend", Namespace: "default", Role: "sidecar", Connected: true},
			{ID: "gw-1", Service: "gateway", Namespace: "default", Role: "gateway", Connected: true},
		},
	})
	// The work tree is main, one commit ahead of what the fleet runs.
	out, code := runCLI(t, "diff", "--repo", dir, "--path", "policy", "--live", "--controller", url)
	if code != 1 {
		t.Errorf("exit code %d; want 1\n%s", code, out)
	}
	for _, want := range []string{"base: main@sha1:" + sha + " (live)", "3 of 4 proxy classes (3 of 4 live proxies)", "v1 100% -> v2 100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, code := runCLI(t, "diff", "--repo", dir, "--live", "--base", "main", "--controller", url); code != 2 {
		t.Errorf("--live with --base: exit code %d; want 2", code)
	}
	none := fakeController(t, admin.Status{})
	if _, code := runCLI(t, "diff", "--repo", dir, "--live", "--controller", none); code != 2 {
		t.Errorf("--live before any revision applied: exit code %d; want 2", code)
	}
}

func gitRevParse(t *testing.T, dir, ref string) string {
	t.Helper()
	cmd := exec.Command("git", "rev-parse", ref)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git rev-parse %s: %v", ref, err)
	}
	return strings.TrimSpace(string(out))
}

// cliCase is one CLI invocation and what it must do.
type cliCase struct {
	name     string
	args     []string
	wantCode int
	wantOut  string
}

func TestValidateFormatsAndThreshold(t *testing.T) {
	dir := cliRepo(t)
	good := filepath.Join(dir, "policy")
	tests := []cliCase{
		{name: "clean", args: []string{good}, wantCode: 0, wantOut: "0 error(s)"},
		{name: "github", args: []string{good, "--format", "github"}, wantCode: 0},
		{name: "junit", args: []string{good, "-o", "junit"}, wantCode: 0, wantOut: `<testcase name="VirtualService default/reviews"`},
		{name: "bad threshold", args: []string{good, "--failure-threshold", "info"}, wantCode: 2},
	}
	// A warning only: an unknown kind.
	warn := t.TempDir()
	if err := os.WriteFile(filepath.Join(warn, "w.yaml"), []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests = append(tests,
		cliCase{name: "warning below error threshold", args: []string{warn, "-o", "github"}, wantCode: 0, wantOut: "::warning file=w.yaml,line=2,title=GM0105::"},
		cliCase{name: "warning at warning threshold", args: []string{warn, "--failure-threshold", "warning"}, wantCode: 1},
	)
	// Structural problems: each is a finding at its line, the rest is still
	// checked, and validate exits 1 (not 2) with proper text and JSON.
	broken := t.TempDir()
	for name, content := range map[string]string{
		"bad.yaml":    "apiVersion: v1\nkind: [\n",
		"noname.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  namespace: x\n",
		"w.yaml":      "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
	} {
		if err := os.WriteFile(filepath.Join(broken, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests = append(tests,
		cliCase{name: "bad yaml is a finding", args: []string{broken}, wantCode: 1, wantOut: "bad.yaml:3: GM0101 error: invalid YAML: "},
		cliCase{name: "missing name is a finding", args: []string{broken}, wantCode: 1, wantOut: "noname.yaml:1: GM0110 error: missing metadata.name"},
		cliCase{name: "the rest is still checked", args: []string{broken}, wantCode: 1, wantOut: "w.yaml:2: GM0105 warning"},
		cliCase{name: "structural problems in json", args: []string{broken, "-o", "json"}, wantCode: 1, wantOut: `"errors": 2`},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, append([]string{"validate"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code %d; want %d\n%s", code, tt.wantCode, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
		})
	}
}

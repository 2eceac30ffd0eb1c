package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/examples/quickstart"
	"github.com/gitmesh/gitmesh/internal/demo"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/syncbuf"
)

// demoRollbackBudget is how soon after the break-it commit the demo's
// RolloutPolicy must have rolled it back: a poll (1s), two failed analysis
// checks (1s apart) and slack for a loaded machine.
const demoRollbackBudget = 15 * time.Second

// TestDemoTour runs `gitmesh up`'s demo with its load and follows the tour
// it prints, running each step's shell commands exactly as printed: the
// shift to v2 is promoted, the break-it commit (a fault aborting reviews
// with 503) is rolled back automatically within demoRollbackBudget and
// recorded in history, and the fix is promoted. Issue 14: the demo's
// canary wave carried no traffic and had no analysis, so a broken commit
// sat until the progress deadline.
func TestDemoTour(t *testing.T) {
	for _, tool := range []string{"git", "sh", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed (CI=true)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	dir := filepath.Join(t.TempDir(), "gitmesh-demo")
	out := &syncbuf.Buffer{}
	ready := make(chan demo.Info, 1)
	var steps []demo.Step
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, demo.Config{
			Dir: dir, PortBase: 21000, CLI: "gitmesh", Out: out,
			NewLogger: func(io.Writer) *slog.Logger { return e2etest.Logger(t) },
			Ready: func(info demo.Info, s []demo.Step) {
				steps = s
				ready <- info
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err, ok := e2etest.WaitDone(t, "demo", done, e2etest.StopTimeout); ok && err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	var info demo.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("demo not ready within 60s")
	}
	step := func(title string) demo.Step {
		t.Helper()
		for _, s := range steps {
			if s.Title == title {
				return s
			}
		}
		t.Fatalf("no step %q in %+v", title, steps)
		return demo.Step{}
	}
	// run runs a step's shell commands as printed, leaving the CLI's (the
	// test reads the admin API instead) and curl's (it sends its own
	// requests) out.
	run := func(s demo.Step) {
		t.Helper()
		for _, c := range s.Commands {
			if !strings.Contains(out.String(), "     "+c+"\n") {
				t.Fatalf("step %q: command %q is not printed as is:\n%s", s.Title, c, out.String())
			}
			if strings.HasPrefix(c, "gitmesh ") || strings.HasPrefix(c, "curl ") {
				continue
			}
			cmd := exec.Command("sh", "-c", c)
			cmd.Dir = t.TempDir() // the steps work from any directory
			cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("step %q: %s: %v\n%s", s.Title, c, err, b)
			}
		}
	}
	head := func() string {
		t.Helper()
		b, err := exec.Command("git", "-C", info.RepoDir, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	getJSON := func(path string, v any) error {
		resp, err := client.Get(info.AdminURL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	frontend := func() string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+info.Outbound+"/", nil)
		req.Host = "frontend"
		return e2etest.Answer(client.Do(req))
	}
	promoted := func(sha string) func() string {
		return func() string {
			var st admin.Status
			if err := getJSON("/api/v1/status", &st); err != nil {
				return err.Error()
			}
			if !strings.HasSuffix(st.LastAppliedRevision, sha) {
				return fmt.Sprintf("last applied %s, rollout %+v", st.LastAppliedRevision, st.Rollout)
			}
			return ""
		}
	}

	if got := frontend(); !strings.Contains(got, "reviews v1") {
		t.Fatalf("before the tour the frontend answered %q; want reviews v1", got)
	}

	shift := step(demo.StepShift)
	run(shift)
	if changed := changedLines(t, filepath.Join(info.RepoDir, "reviews.yaml")); len(changed) != 1 || strings.TrimSpace(changed[0]) != "subset: v2" {
		t.Fatalf("the printed sed changed %q; want only the route's subset line", changed)
	}
	e2etest.Eventually(t, 60*time.Second, "the shift to v2 promoted", promoted(head()))
	if got := frontend(); !strings.Contains(got, "reviews v2") {
		t.Fatalf("after the shift the frontend answered %q; want reviews v2", got)
	}

	run(step(demo.StepBreak))
	broken := head()
	committed := time.Now()
	var rolledBack admin.Rollout
	e2etest.Eventually(t, demoRollbackBudget, "the break-it commit rolled back automatically", func() string {
		var h []admin.Rollout
		if err := getJSON("/api/v1/history", &h); err != nil {
			return err.Error()
		}
		for _, ro := range h {
			if strings.HasSuffix(ro.Revision, broken) {
				if ro.Phase != admin.PhaseRolledBack {
					return fmt.Sprintf("rollout of %s is %s (%s)", broken, ro.Phase, ro.Reason)
				}
				rolledBack = ro
				return ""
			}
		}
		return fmt.Sprintf("no rollout of %s in history yet", broken)
	})
	t.Logf("break-it commit rolled back %s after the commit: %s", time.Since(committed).Round(time.Millisecond), rolledBack.Reason)
	if rolledBack.Trigger != admin.TriggerCommit || rolledBack.Reason == "" {
		t.Errorf("history entry %+v; want trigger %s with a reason", rolledBack, admin.TriggerCommit)
	}
	e2etest.Eventually(t, 10*time.Second, "the frontend served by the last good revision again", func() string {
		if got := frontend(); !strings.Contains(got, "reviews v2") {
			return "frontend answered " + got
		}
		return ""
	})

	run(step(demo.StepFix))
	e2etest.Eventually(t, 60*time.Second, "the revert promoted", promoted(head()))
}

// changedLines returns the lines of the file at path that differ from the
// quickstart's reviews.yaml (same length expected).
func changedLines(t *testing.T, path string) []string {
	t.Helper()
	orig, err := quickstart.Policy.ReadFile("policy/reviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Split(string(orig), "\n"), strings.Split(string(now), "\n")
	if len(a) != len(b) {
		t.Fatalf("%s has %d lines; the quickstart's %d", path, len(b), len(a))
	}
	var changed []string
	for i := range a {
		if a[i] != b[i] {
			changed = append(changed, b[i])
		}
	}
	return changed
}

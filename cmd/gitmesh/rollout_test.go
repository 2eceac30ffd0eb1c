package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/controller"
)

const cliRollout = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
  waves:
  - {percent: 50, bake: 1h}
  - {percent: 100}
`

// TestRolloutCommands drives a real controller's rollout through the CLI
// as a person would: status, pause, resume, promote --full, history,
// rollback (and its hold), with and without the admin token.
func TestRolloutCommands(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@gitmesh.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@gitmesh.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(repo, "policy"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "policy", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("services.yaml", cliServices)
	write("reviews.yaml", cliReviews)
	write("rollout.yaml", cliRollout)
	git("add", "-A")
	git("commit", "-q", "-m", "init")

	ctx, cancel := context.WithCancel(context.Background())
	stateDir := t.TempDir()
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: repo, Path: "policy", Interval: 100 * time.Millisecond,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", StateDir: stateDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the controller did not stop within 15s of being cancelled")
		}
	})
	ctrl := "--controller=http://" + c.AdminAddr
	token := "--token-file=" + filepath.Join(stateDir, "admin-token")
	t.Setenv("GITMESH_TOKEN", "")
	status := func() admin.Status {
		t.Helper()
		out, code := runCLI(t, "status", ctrl, "-o", "json")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, out)
		}
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		return st
	}
	waitFor := func(what string, cond func(admin.Status) bool) admin.Status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s; status %+v, rollout %+v", what, st.Ready(), st.Rollout)
			}
			time.Sleep(20 * time.Millisecond) // polling the CLI, bounded by the deadline
		}
	}
	phase := func(p admin.Phase) func(admin.Status) bool {
		return func(st admin.Status) bool { return st.Rollout != nil && st.Rollout.Phase == p }
	}
	first := waitFor("first revision served", func(st admin.Status) bool { return st.LastAppliedRevision != "" }).LastAppliedRevision

	write("reviews.yaml", strings.Replace(cliReviews, "subset: v1}", "subset: v2}", 1))
	git("commit", "-q", "-am", "reviews: v2")
	waitFor("rollout baking", phase(admin.PhaseBaking))

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		then     func(admin.Status) bool
	}{
		{name: "pause needs the token", args: []string{"pause", ctrl}, wantCode: 2, wantOut: "no admin token"},
		{name: "a wrong token is refused", args: []string{"pause", ctrl, "--token-file=" + writeTemp(t, "not-the-token")}, wantCode: 2, wantOut: "401"},
		{name: "pause", args: []string{"pause", ctrl, token}, wantOut: "paused", then: phase(admin.PhasePaused)},
		{name: "pause again says it is paused", args: []string{"pause", ctrl, token}, wantCode: 1, wantOut: "is already paused at"},
		{name: "status keeps the attempted revision while paused", args: []string{"status", ctrl}, wantOut: "Attempted:  main@sha1:"},
		{name: "resume", args: []string{"resume", ctrl, token}, wantOut: "resumed", then: phase(admin.PhaseBaking)},
		{name: "promote --full", args: []string{"promote", "--full", ctrl, token}, wantOut: "promoted", then: phase(admin.PhasePromoted)},
		{name: "abort with nothing in flight", args: []string{"abort", ctrl, token}, wantCode: 1, wantOut: "no rollout in flight"},
		{name: "rollback to the revision before", args: []string{"rollback", ctrl, token}, wantOut: "rolled the fleet back to " + first,
			then: func(st admin.Status) bool { return st.Hold != nil && st.LastAppliedRevision == first }},
		{name: "status shows the hold", args: []string{"status", ctrl}, wantOut: "Hold:       on " + first},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runCLI(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("gitmesh %s: exit %d, output %q; want exit %d and %q", strings.Join(tc.args[:1], " "), code, out, tc.wantCode, tc.wantOut)
			}
			if tc.then != nil {
				waitFor(tc.name, tc.then)
			}
		})
	}

	out, code := runCLI(t, "history", ctrl, "-o", "json")
	var h []admin.Rollout
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil {
		t.Fatalf("history: exit %d: %s", code, out)
	}
	var got []string
	for _, ro := range h {
		got = append(got, fmt.Sprintf("%s/%s", ro.Trigger, ro.Phase))
	}
	if want := "rollback/ManualRollback commit/Promoted initial/Promoted"; strings.Join(got, " ") != want {
		t.Errorf("history = %v; want %s (newest first)", got, want)
	}
}

func writeTemp(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

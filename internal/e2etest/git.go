package e2etest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/gittestserver"
)

// GitRemote is a repository on a loopback git server plus a local clone
// that the test edits and pushes with the git CLI.
type GitRemote struct {
	t     testing.TB
	URL   string // the server's repository URL
	Clone string // the local work tree
}

// NewGitRemote starts a git HTTP server, stopped when the test ends, and
// a clone of its repository mesh/policy.git on branch main.
func NewGitRemote(t testing.TB) *GitRemote {
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
	g := &GitRemote{t: t, URL: srv.HTTPAddress() + "/mesh/policy.git", Clone: filepath.Join(t.TempDir(), "work")}
	g.Git("init", "-q", "-b", "main", g.Clone)
	g.Git("-C", g.Clone, "remote", "add", "origin", g.URL)
	return g
}

// Git runs the git CLI with args, with no user or system configuration
// and a fixed identity, and returns its trimmed output. It fails the test
// when git fails or takes longer than GitCommandTimeout.
func (g *GitRemote) Git(args ...string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), GitCommandTimeout)
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

// Push writes files (path -> content; "" deletes), commits and pushes
// main. It returns the new commit's SHA.
func (g *GitRemote) Push(msg string, files map[string]string) string {
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
	g.Git("-C", g.Clone, "add", "-A")
	g.Git("-C", g.Clone, "commit", "-q", "--allow-empty", "-m", msg)
	g.Git("-C", g.Clone, "push", "-q", "origin", "main")
	return g.Git("-C", g.Clone, "rev-parse", "HEAD")
}

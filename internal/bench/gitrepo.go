package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// gitRepo is a bare repository the controller polls over file:// and a
// work tree the harness commits to with the git CLI.
type gitRepo struct {
	bare, work string
}

// URL returns the repository's file:// URL.
func (g *gitRepo) URL() string { return "file://" + g.bare }

// newGitRepo creates the bare repository and its work tree under dir.
func newGitRepo(ctx context.Context, dir string) (*gitRepo, error) {
	g := &gitRepo{bare: filepath.Join(dir, "remote.git"), work: filepath.Join(dir, "work")}
	if _, err := runGit(ctx, dir, "init", "-q", "--bare", "-b", "main", g.bare); err != nil {
		return nil, err
	}
	if _, err := runGit(ctx, dir, "init", "-q", "-b", "main", g.work); err != nil {
		return nil, err
	}
	if _, err := runGit(ctx, g.work, "remote", "add", "origin", g.bare); err != nil {
		return nil, err
	}
	return g, nil
}

// commit commits everything in the work tree and pushes it; it returns the
// commit's hash.
func (g *gitRepo) commit(ctx context.Context, msg string) (string, error) {
	if _, err := runGit(ctx, g.work, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := runGit(ctx, g.work, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	if _, err := runGit(ctx, g.work, "push", "-q", "origin", "main"); err != nil {
		return "", err
	}
	sha, err := runGit(ctx, g.work, "rev-parse", "HEAD")
	return strings.TrimSpace(sha), err
}

// runGit runs the git CLI in dir without user or system configuration.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+dir,
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

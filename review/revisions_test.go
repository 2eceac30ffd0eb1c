package review

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckoutResolvesRefs(t *testing.T) {
	r := fixtureRepo(t)
	weights := r.git("rev-parse", "weights")
	v1 := r.git("rev-parse", "v1.0")
	mainSHA := r.git("rev-parse", "main")
	parent := r.git("rev-parse", "main~1")

	// A clone has origin/main as a remote-tracking branch.
	clone := filepath.Join(t.TempDir(), "clone")
	cmd := exec.Command("git", "clone", "-q", r.dir, clone)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	local, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	cloned, err := OpenRepo(filepath.Join(clone, "policy")) // a subdirectory finds the repo
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		repo    *Repo
		ref     string
		want    string
		wantErr bool
	}{
		{name: "branch", repo: local, ref: "main", want: "main@sha1:" + mainSHA},
		{name: "tag", repo: local, ref: "v1.0", want: "v1.0@sha1:" + v1},
		{name: "full sha", repo: local, ref: weights, want: "sha1:" + weights},
		{name: "short sha", repo: local, ref: weights[:10], want: "sha1:" + weights},
		{name: "first parent", repo: local, ref: "main~1", want: "main~1@sha1:" + parent},
		{name: "remote-tracking branch", repo: cloned, ref: "origin/main", want: "origin/main@sha1:" + mainSHA},
		{name: "remote-tracking feature", repo: cloned, ref: "origin/broken", want: "origin/broken@sha1:" + r.git("rev-parse", "broken")},
		{name: "unknown", repo: local, ref: "no-such-branch", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.repo.Checkout(context.Background(), tt.ref)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatalf("Checkout(%q) succeeded; want error", tt.ref)
				}
				return
			}
			if err != nil {
				t.Fatalf("Checkout(%q): %v", tt.ref, err)
			}
			if c.Revision != tt.want {
				t.Errorf("Revision = %q; want %q", c.Revision, tt.want)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, "policy", "reviews.yaml")); err != nil {
				t.Errorf("checkout lacks policy/reviews.yaml: %v", err)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, ".git")); err == nil {
				t.Errorf("checkout has a .git directory")
			}
			dir := c.Dir
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Close left %s behind", dir)
			}
		})
	}
}

func TestWorktreeSeesUncommittedChanges(t *testing.T) {
	r := fixtureRepo(t)
	r.write("policy/reviews.yaml", strings.Replace(r.read("policy/reviews.yaml"), "weight: 90", "weight: 50", 1))
	r.write("policy/reviews.yaml", strings.Replace(r.read("policy/reviews.yaml"), "weight: 10", "weight: 50", 1))
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rep, err := Compare(repo.Load(ctx, "main", "", "policy", ""), repo.Load(ctx, WorktreeRevision, "", "policy", ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Head.Revision != WorktreeRevision {
		t.Errorf("head revision = %q; want %q", rep.Head.Revision, WorktreeRevision)
	}
	wantDetail(t, rep, TypeRoute, "reviews:9080", "v1 90% / v2 10% -> v1 50% / v2 50%")
	if _, err := os.Stat(filepath.Join(r.dir, "policy")); err != nil {
		t.Errorf("loading the work tree removed it: %v", err)
	}
}

func TestLoadUnknownRefIsSideError(t *testing.T) {
	r := fixtureRepo(t)
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	s := repo.Load(context.Background(), "nope", "", "policy", "")
	if s.Err == nil {
		t.Fatal("Load(nope) has no error")
	}
	rep, err := Compare(s, repo.Load(context.Background(), "main", "", "policy", ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode() != 2 {
		t.Errorf("ExitCode() = %d; want 2", rep.ExitCode())
	}
}

func TestLiveSHA(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	for _, tt := range []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "main@sha1:" + sha, want: sha},
		{in: "sha1:" + sha, want: sha},
		{in: "main", wantErr: true},
		{in: "main@sha1:abc", wantErr: true},
	} {
		got, err := LiveSHA(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("LiveSHA(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestIsURL(t *testing.T) {
	for in, want := range map[string]bool{
		"https://github.com/org/repo": true,
		"file:///srv/repo":            true,
		"git@github.com:org/repo.git": true,
		".":                           false,
		"../policy":                   false,
		"/srv/repo":                   false,
		"dir/with@at:colon/x":         false,
	} {
		if got := isURL(in); got != want {
			t.Errorf("isURL(%q) = %v; want %v", in, got, want)
		}
	}
}

func TestCheckoutFromURL(t *testing.T) {
	r := fixtureRepo(t)
	repo, err := OpenRepo("file://" + r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Worktree(); err == nil {
		t.Error("Worktree() of a URL succeeded; want ErrNoWorktree")
	}
	sha := r.git("rev-parse", "weights")
	for _, tt := range []struct{ ref, want string }{
		{"main", "main@sha1:" + r.git("rev-parse", "main")},
		{"refs/tags/v1.0", "v1.0@sha1:" + r.git("rev-parse", "v1.0")},
		{sha, "sha1:" + sha},
	} {
		c, err := repo.Checkout(t.Context(), tt.ref)
		if err != nil {
			t.Fatalf("Checkout(%q): %v", tt.ref, err)
		}
		if c.Revision != tt.want {
			t.Errorf("Checkout(%q).Revision = %q; want %q", tt.ref, c.Revision, tt.want)
		}
		if _, err := os.Stat(filepath.Join(c.Dir, "policy", "reviews.yaml")); err != nil {
			t.Errorf("Checkout(%q) lacks policy/reviews.yaml: %v", tt.ref, err)
		}
		c.Close()
	}
	if _, err := repo.Checkout(t.Context(), "HEAD~1"); err == nil {
		t.Error("Checkout(HEAD~1) of a URL succeeded; want an error")
	}
}

package demo

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitmesh/gitmesh/examples/quickstart"
)

// seedRepo creates a Git repository at dir from the embedded quickstart
// policy, or reuses the one there (keeping the user's commits). It reports
// whether it created it.
func seedRepo(dir string) (bool, error) {
	if _, err := gogit.PlainOpen(dir); err == nil {
		return false, nil
	}
	repo, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return false, fmt.Errorf("creating demo repository %s: %w", dir, err)
	}
	// A local identity, so `git commit` works in the demo repo on a fresh machine.
	c, err := repo.Config()
	if err != nil {
		return false, fmt.Errorf("configuring demo repository: %w", err)
	}
	c.User.Name, c.User.Email = "gitmesh demo", "demo@gitmesh.invalid"
	if err := repo.SetConfig(c); err != nil {
		return false, fmt.Errorf("configuring demo repository: %w", err)
	}
	err = fs.WalkDir(quickstart.Policy, "policy", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := quickstart.Policy.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("writing quickstart policy: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	if err := wt.AddGlob("*.yaml"); err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	sig := &object.Signature{Name: c.User.Name, Email: c.User.Email, When: time.Now()}
	if _, err := wt.Commit("Seed the gitmesh quickstart policy", &gogit.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	return true, nil
}

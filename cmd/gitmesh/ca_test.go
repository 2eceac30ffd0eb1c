package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/internal/controller"
)

// TestCACommands drives the CA through the CLI: status, rotate, a prune
// refused with nothing to prune, and the CA line of `gitmesh status`.
func TestCACommands(t *testing.T) {
	stateDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, controller.Config{RepoURL: t.TempDir(), StateDir: stateDir,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = c.Wait()
	})
	ctrl := "--controller=http://" + c.AdminAddr
	token := "--token-file=" + filepath.Join(stateDir, "admin-token")
	t.Setenv("GITMESH_TOKEN", "")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"status", []string{"ca", "status", ctrl}, 0, "trust bundle 1 root(s), trust domain cluster.local"},
		{"prune with one root", []string{"ca", "prune", ctrl, token}, 1, "nothing to prune"},
		{"rotate needs the token", []string{"ca", "rotate", ctrl}, 2, "no admin token"},
		{"rotate", []string{"ca", "rotate", ctrl, token}, 0, "trust bundle 2 root(s)"},
		{"gitmesh status shows the CA", []string{"status", ctrl}, 0, "CA:         generated root sha256:"},
		{"prune", []string{"ca", "prune", ctrl, token}, 0, "pruned the trust bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runCLI(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("gitmesh %s: exit %d, output:\n%s\nwant exit %d and %q", strings.Join(tc.args, " "), code, out, tc.wantCode, tc.wantOut)
			}
		})
	}
}

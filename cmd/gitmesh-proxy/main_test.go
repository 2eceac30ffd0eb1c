package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoControllerDeps keeps the sidecar binary slim: it must not link the
// controller side, whose packages (and their initialisers) cost the proxy
// tens of MB of resident memory.
func TestNoControllerDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH")
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("listing the dependencies: %v", err)
	}
	banned := []string{"k8s.io/", "sigs.k8s.io/", "github.com/go-git/", "go.etcd.io/bbolt", "github.com/gitmesh/gitmesh/internal/controller", "plugin"}
	for _, pkg := range strings.Fields(string(out)) {
		for _, b := range banned {
			if strings.HasPrefix(pkg, b) || pkg == b {
				t.Errorf("gitmesh-proxy links %s", pkg)
			}
		}
	}
}

// Package helmtest runs the helm CLI for the chart tests (charts/,
// e2e/helm). The binary is built once per machine by hack/helm-tool.sh
// (`make helm-tool`) into $HELM_TOOLS_DIR, default
// $HOME/.cache/gitmesh/helm/<Version>; $HELM_BIN names another one.
//
// A test that needs helm calls Binary, which skips the test with a message
// saying how to build it when it is missing, and fails it instead when the
// CI environment variable is "true".
package helmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Version is the helm release hack/helm-tool.sh builds (v3.22.0 is served
// by the module proxy but not approved on our machines).
const Version = "v3.21.4"

// Path returns where the helm binary is expected: $HELM_BIN, else
// $HELM_TOOLS_DIR/helm, else $HOME/.cache/gitmesh/helm/<Version>/helm.
func Path() string {
	if p := os.Getenv("HELM_BIN"); p != "" {
		return p
	}
	dir := os.Getenv("HELM_TOOLS_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		dir = filepath.Join(home, ".cache", "gitmesh", "helm", Version)
	}
	return filepath.Join(dir, "helm")
}

// Binary returns the helm binary's path, or skips tb (fails it when
// $CI is "true") when there is none.
func Binary(tb testing.TB) string {
	tb.Helper()
	p := Path()
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p
	}
	msg := fmt.Sprintf("helm %s not found at %s: build it once with `make helm-tool` (about 100 s), or set HELM_BIN", Version, p)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " (CI=true requires the chart tests to run)")
	}
	tb.Skip(msg)
	return ""
}

// ChartDir returns the absolute path of charts/gitmesh, found from this
// source file.
func ChartDir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("finding charts/gitmesh: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "gitmesh")
}

// Timeout bounds one helm command.
const Timeout = 2 * time.Minute

// Run runs helm with args and the environment env (added to the test
// process's, with helm's cache, config and data directories in a
// temporary directory so nothing outside the test is read or written),
// and returns its standard output and standard error.
func Run(ctx context.Context, tb testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	bin := Binary(tb)
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	home := tb.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %v: %w\n%s", args, err, errb.String())
	}
	return out.String(), errb.String(), err
}

// Command gitmesh-proxy is gitmesh's bundled proxy alone, the binary the
// sidecar injector and the chart run in each pod: `gitmesh-proxy --xds
// HOST:PORT --id NODE ...` takes the flags of `gitmesh proxy` and behaves
// the same (both are package proxycmd), without linking the controller,
// the Kubernetes client or kustomize, so that a sidecar maps a binary
// about half the size of gitmesh's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/gitmesh/gitmesh/internal/proxycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := proxycmd.New(proxycmd.Options{Use: "gitmesh-proxy"})
	cmd.Version = version()
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// version is the module version and commit the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}

// exitCode maps the command's error to the process exit code, printing it.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *proxycmd.ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(os.Stderr, "error:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	return 2
}

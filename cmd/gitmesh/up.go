package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/internal/demo"
)

// demoContext is the client context `gitmesh up` writes.
const demoContext = "demo"

func newUpCmd(g *globalFlags) *cobra.Command {
	cfg := demo.Config{}
	var verbose, noLogin bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run an all-in-one local mesh (Git repo, controller, demo services with sidecars)",
		Long: `Run an all-in-one local mesh: a Git repository seeded from examples/quickstart
(under ./gitmesh-demo by default; an existing one is reused), the controller,
three demo services (frontend, reviews v1 and v2) each behind a sidecar, and
light traffic. Once it serves, it prints where everything listens and a
numbered tour: send a request, shift reviews to v2, break it and watch the
automatic rollback, fix it. Ctrl-C stops everything.

It points the client commands (status, history, pause, ...) at itself: the
client configuration's context "demo" becomes current (see 'gitmesh login';
--no-login leaves the configuration alone).

Logs go to <dir>/logs/up.log (-v: to the console as well). Ports: the admin
API on the base port (default 15000), xDS on base+10, the sidecars from
base+1; when one is taken the layout moves up by 1000 until it is free, and
says so (--port-base forces one). One 'gitmesh up' runs per directory: a
second one says where the first runs. A start that fails removes the
directory it created.

Exit codes: 0 stopped cleanly, 2 could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.logger(io.Discard); err != nil { // checks the flags
				return err
			}
			cfg.NewLogger = func(w io.Writer) *slog.Logger { l, _ := g.logger(w); return l }
			cfg.Out, cfg.Err = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if verbose {
				cfg.Console = cmd.ErrOrStderr()
			}
			cfg.FixedPorts = cmd.Flags().Changed("port-base")
			cfg.CLI = cliName()
			if !noLogin {
				cfg.Login = loginDemo
			}
			if err := demo.Run(cmd.Context(), cfg); err != nil {
				return &exitError{2, err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "gitmesh-demo", "directory for the demo repository, state and logs")
	cmd.Flags().IntVar(&cfg.PortBase, "port-base", demo.DefaultPortBase, "first port of the demo's port layout (default: 15000, or the next free layout)")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", time.Second, "controller poll interval")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "write the logs to the console too")
	cmd.Flags().BoolVar(&noLogin, "no-login", false, "do not make the demo the client configuration's current context")
	return cmd
}

// loginDemo makes the demo's controller the current client context.
func loginDemo(info demo.Info) (string, error) {
	tokenFile, err := filepath.Abs(info.TokenFile)
	if err != nil {
		return "", err
	}
	path, cfg, err := openClientConfig()
	if err != nil {
		return "", err
	}
	cfg.set(clientContext{Name: demoContext, Controller: info.AdminURL, TokenFile: tokenFile})
	if err := cfg.save(path); err != nil {
		return "", err
	}
	return fmt.Sprintf("context %q in %s (current)", demoContext, path), nil
}

// cliName is how the tour calls this CLI: "gitmesh" when that is what the
// PATH finds, "go run ./cmd/gitmesh" under go run, else this binary's path.
func cliName() string {
	exe, err := os.Executable()
	if err != nil {
		return "gitmesh"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/gitmesh"
	}
	if p, err := exec.LookPath("gitmesh"); err == nil {
		if a, b := resolved(p), resolved(exe); a == b {
			return "gitmesh"
		}
	}
	return exe
}

func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return p
}

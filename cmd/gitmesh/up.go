package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/internal/demo"
)

func newUpCmd(g *globalFlags) *cobra.Command {
	cfg := demo.Config{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run an all-in-one local mesh (Git repo, controller, demo services with sidecars)",
		Long: `Run an all-in-one local mesh: a Git repository seeded from examples/quickstart
(under ./gitmesh-demo by default; an existing one is reused), the controller,
three demo services (frontend, reviews v1 and v2) each behind a sidecar, and
light traffic. It prints the commands to send a request, edit the policy,
commit, and watch it apply. Ctrl-C stops everything.

Exit codes: 0 stopped cleanly, 2 could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Out = log, cmd.OutOrStdout()
			if err := demo.Run(cmd.Context(), cfg); err != nil {
				return &exitError{2, err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "gitmesh-demo", "directory for the demo repository and state")
	cmd.Flags().IntVar(&cfg.PortBase, "port-base", 15000, "first port of the demo's fixed port layout")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", time.Second, "controller poll interval")
	return cmd
}

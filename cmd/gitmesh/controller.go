package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/internal/controller"
)

// Default listen addresses of the controller.
const (
	defaultXDSAddr   = "127.0.0.1:15010"
	defaultAdminAddr = "127.0.0.1:15000"
)

func newControllerCmd(g *globalFlags) *cobra.Command {
	var cfg controller.Config
	cmd := &cobra.Command{
		Use:   "controller --repo URL [--branch B|--tag T|--semver R|--commit SHA] [--path DIR]",
		Short: "Run the reconciler and the xDS server",
		Long: `Run the gitmesh controller: poll a Git repository for mesh policy, validate and
compile each new revision, and serve it to proxies over ADS. A revision that
fails any step never reaches a proxy: the last good one keeps serving, and
'gitmesh status' says why with file:line.

Exit codes: 0 stopped cleanly, 2 could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.RepoURL == "" {
				return &exitError{2, errors.New("--repo is required")}
			}
			if n := countSet(cfg.Ref.Branch, cfg.Ref.Tag, cfg.Ref.SemVer, cfg.Ref.Commit); n > 1 {
				return &exitError{2, errors.New("give at most one of --branch, --tag, --semver, --commit")}
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg.Logger = log
			ctx := cmd.Context()
			c, err := controller.Start(ctx, cfg)
			if err != nil {
				return &exitError{2, err}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "gitmesh controller: xDS on %s, admin API on http://%s\n", c.XDSAddr, c.AdminAddr)
			if err := c.Wait(); err != nil {
				return &exitError{2, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.RepoURL, "repo", "", "policy repository: https://, ssh://, git://, file:// URL or a local path")
	f.StringVar(&cfg.Ref.Branch, "branch", "", "branch to follow (default main)")
	f.StringVar(&cfg.Ref.Tag, "tag", "", "tag to deploy")
	f.StringVar(&cfg.Ref.SemVer, "semver", "", "semver range: deploy the newest matching tag (e.g. '>=1.0.0 <2.0.0')")
	f.StringVar(&cfg.Ref.Commit, "commit", "", "exact commit SHA to deploy")
	f.StringVar(&cfg.Path, "path", "", "policy directory inside the repository (a kustomization or plain YAML)")
	f.DurationVar(&cfg.Interval, "interval", 30*time.Second, "how often to poll the repository")
	f.StringVar(&cfg.XDSAddr, "xds-addr", defaultXDSAddr, "listen address of the ADS (xDS) gRPC server")
	f.StringVar(&cfg.AdminAddr, "admin-addr", defaultAdminAddr, "listen address of the admin API (/api/v1, /metrics, /healthz)")
	f.StringVar(&cfg.StateDir, "state-dir", "gitmesh-state", "directory for the state database, the checkout and the admin token")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "file holding the admin API bearer token (default <state-dir>/admin-token, generated)")
	f.StringVar(&cfg.Namespace, "namespace", "default", "namespace of policy objects that name none")
	return cmd
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

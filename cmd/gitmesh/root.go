package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gitmesh/gitmesh/internal/logging"
)

// globalFlags are the flags every command has.
type globalFlags struct {
	logLevel  string
	logFormat string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "gitmesh",
		Short:         "gitmesh: a declarative GitOps service mesh",
		Long:          "gitmesh pulls Istio-style mesh policy from Git, validates and compiles it to Envoy xDS,\nand rolls it out to a fleet of bundled proxies.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readBuildInfo().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newUpCmd(g),
		newControllerCmd(g),
		newProxyCmd(g),
		newProxyInitCmd(),
		newValidateCmd(),
		newDiffCmd(),
		newStatusCmd(),
		newHistoryCmd(),
		newCACmd(),
		newLoginCmd(),
		newLogoutCmd(),
		newVersionCmd(),
	)
	root.AddCommand(newRolloutCmds()...)
	return root
}

// logger builds the process logger from the global flags, writing to w. A
// key a component sets again (component=controller, then component=xds)
// replaces the earlier value rather than repeating it.
func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	log, err := logging.New(w, g.logLevel, g.logFormat)
	if err != nil {
		return nil, &exitError{2, err}
	}
	return log, nil
}

// outputFlag adds -o/--output (with --format as an alias) to cmd.
func outputFlag(cmd *cobra.Command, p *string, allowed ...string) {
	help := "output format: `" + strings.Join(allowed, "|") + "`"
	cmd.Flags().StringVarP(p, "output", "o", allowed[0], help)
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "format" {
			name = "output"
		}
		return pflag.NormalizedName(name)
	})
	cmd.PreRunE = chainPreRun(cmd.PreRunE, func(*cobra.Command, []string) error {
		for _, a := range allowed {
			if *p == a {
				return nil
			}
		}
		return &exitError{2, fmt.Errorf("--output %q: want one of %s", *p, strings.Join(allowed, ", "))}
	})
}

func chainPreRun(a, b func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	if a == nil {
		return b
	}
	return func(c *cobra.Command, args []string) error {
		if err := a(c, args); err != nil {
			return err
		}
		return b(c, args)
	}
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

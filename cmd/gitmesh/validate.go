package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/review"
)

func newValidateCmd() *cobra.Command {
	var (
		output    string
		namespace string
		threshold string
	)
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Build, compile and analyze policy offline",
		Long: `Build DIR (a kustomization or a directory of YAML, default .), parse and validate
every object, and compile it as the controller would. Prints one line per
diagnostic: file:line: CODE severity: message.

For CI, --format github writes workflow annotations (::error file=F,line=L::...,
warnings as ::warning) and --format junit a JUnit XML report (one testcase per
object, a failure per error).

Exit codes: 0 no finding at or above --failure-threshold (default error),
1 such findings, 2 could not build.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			var sev compiler.Severity
			switch threshold {
			case "error":
				sev = compiler.SeverityError
			case "warning":
				sev = compiler.SeverityWarning
			default:
				return &exitError{2, fmt.Errorf("--failure-threshold %q: want error or warning", threshold)}
			}
			root, path := splitRoot(dir)
			v, err := review.Validate(root, path, namespace)
			if err != nil {
				return &exitError{2, err}
			}
			if err := v.Write(cmd.OutOrStdout(), output); err != nil {
				return &exitError{2, err}
			}
			if v.AtOrAbove(sev) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	outputFlag(cmd, &output, review.FormatText, review.FormatJSON, review.FormatGitHub, review.FormatJUnit)
	cmd.Flags().StringVar(&threshold, "failure-threshold", "error", "exit 1 when a finding at or above this severity exists: error or warning")
	cmd.Flags().StringVar(&namespace, "namespace", nodemeta.DefaultNamespace, "namespace of objects that name none")
	return cmd
}

// splitRoot picks the root that file names are relative to: the current
// directory when dir is inside it, else dir itself.
func splitRoot(dir string) (root, path string) {
	clean := filepath.Clean(dir)
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return clean, ""
	}
	return ".", clean
}

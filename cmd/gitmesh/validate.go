package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

func newValidateCmd() *cobra.Command {
	var (
		output    string
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Build, compile and analyze policy offline",
		Long: `Build DIR (a kustomization or a directory of YAML, default .), parse and validate
every object, and compile it as the controller would. Prints one line per
diagnostic: file:line: CODE severity: message.

Exit codes: 0 no errors, 1 errors found, 2 could not build.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			root, path := splitRoot(dir)
			objs, err := sources.Build(root, path)
			if err != nil {
				return &exitError{2, err}
			}
			policy, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(namespace))
			if !diags.HasErrors() && policy != nil {
				probe := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: namespace, Service: "gitmesh-validate", Outbound: "127.0.0.1:15001"}
				if _, err := policy.Compile(probe, nil); err != nil {
					return &exitError{2, fmt.Errorf("compiling: %w", err)}
				}
			}
			if err := printDiagnostics(cmd.OutOrStdout(), output, len(objs), diags); err != nil {
				return &exitError{2, err}
			}
			if diags.HasErrors() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	outputFlag(cmd, &output, "text", "json")
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

func printDiagnostics(w io.Writer, format string, objects int, diags compiler.Diagnostics) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if diags == nil {
			diags = compiler.Diagnostics{}
		}
		return enc.Encode(map[string]any{"objects": objects, "diagnostics": diags, "errors": countSeverity(diags, compiler.SeverityError)})
	}
	for _, d := range diags {
		fmt.Fprintln(w, d.String())
	}
	fmt.Fprintf(w, "%d object(s), %d error(s), %d warning(s)\n", objects, countSeverity(diags, compiler.SeverityError), countSeverity(diags, compiler.SeverityWarning))
	return nil
}

func countSeverity(diags compiler.Diagnostics, s compiler.Severity) int {
	n := 0
	for _, d := range diags {
		if d.Severity == s {
			n++
		}
	}
	return n
}

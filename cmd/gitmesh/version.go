package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what `gitmesh version` reports, read from the build
// information the Go toolchain embeds in the binary.
type buildInfo struct {
	// Version is the module version: a tag for `go install ...@v1.2.3`,
	// "(devel)" for a build from a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from ("" when the
	// build recorded none, as with `go run`).
	Commit string `json:"commit,omitempty"`
	// CommitTime is that commit's time (RFC 3339): Go records no build time.
	CommitTime string `json:"commitTime,omitempty"`
	// Modified is set when the work tree had uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// readBuildInfo reads the binary's build information.
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildInfoFrom(bi)
}

// buildInfoFrom converts Go's build information (nil when the binary has
// none). Go records the commit only for `go build` and `go install` in a
// Git checkout (not `go run`, nor a linked worktree, nor -buildvcs=false).
func buildInfoFrom(bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one line `gitmesh --version` prints:
// "gitmesh (devel) commit 41b6eff0c1d2 (dirty, 2026-12-05T03:51:04Z) go1.25.1 linux/amd64".
func (b buildInfo) String() string {
	var s strings.Builder
	s.WriteString("gitmesh " + b.Version)
	if b.Commit != "" {
		s.WriteString(" commit " + b.Commit[:min(12, len(b.Commit))])
		var notes []string
		if b.Modified {
			notes = append(notes, "dirty")
		}
		if b.CommitTime != "" {
			notes = append(notes, b.CommitTime)
		}
		if len(notes) > 0 {
			s.WriteString(" (" + strings.Join(notes, ", ") + ")")
		}
	}
	s.WriteString(" " + b.GoVersion + " " + b.Platform)
	return s.String()
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o text|json]",
		Short: "Print gitmesh's version, commit and Go version",
		Long: `Print the version of this binary, read from the build information Go embeds:
the module version ("(devel)" for a build from a checkout), the commit it
was built from with "dirty" when the work tree had changes, that commit's
time, the Go version and the platform. 'gitmesh --version' prints the same
line.

Exit codes: 0 printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := readBuildInfo()
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), b)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), b)
			return err
		},
	}
	outputFlag(cmd, &output, "text", "json")
	return cmd
}

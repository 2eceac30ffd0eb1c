package review

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteText renders r for a terminal: every change, one per line.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	base := r.Base.Revision
	if r.BaseIsLive {
		base += " (live)"
	}
	p("base: %s\n", base)
	p("head: %s\n", r.Head.Revision)
	for _, s := range []struct {
		name string
		info SideInfo
	}{{"base", r.Base}, {"head", r.Head}} {
		if s.info.Error != "" {
			p("\n%s could not be built: %s\n", s.name, s.info.Error)
		}
	}
	if r.Base.Error != "" || r.Head.Error != "" {
		p("\nresult: %s\n", r.verdict())
		return bw.Flush()
	}

	p("\nPolicy: %s\n", objectSummary(r.Objects))
	for _, o := range r.Objects {
		p("  %s %s  %s\n", changeSign(o.Change), o.ID(), o.Origin)
		for _, f := range o.Fields {
			line := ""
			if f.Line > 0 {
				line = fmt.Sprintf("  (line %d)", f.Line)
			}
			p("      %s %s%s\n", changeSign(f.Change), f.String(), line)
		}
	}

	p("\nxDS: %s; %s\n", blastSummary(r.Blast), resourceSummary(r.Classes))
	for _, g := range groupClasses(r.Classes) {
		p("  %s:\n", strings.Join(g.names, ", "))
		for _, ch := range g.changes {
			detail := ""
			if ch.Detail != "" {
				detail = ": " + ch.Detail
			}
			p("    %s %s %s%s\n", changeSign(ch.Change), ch.Type, ch.Label, detail)
		}
	}

	p("\nAnalyzers: %s\n", diagnosticSummary(r.Diagnostics))
	for _, d := range r.Diagnostics.New {
		p("  + %s\n", d.String())
	}
	for _, d := range r.Diagnostics.Fixed {
		p("  - fixed: %s\n", d.String())
	}

	if s := r.Rollout; s != nil {
		p("\nRollout: %s\n", rolloutLine(s, true))
		if len(s.Gates) > 0 {
			p("  gates: %s\n", strings.Join(s.Gates, "; "))
		}
		if len(s.Windows) > 0 {
			p("  windows: %s\n", strings.Join(s.Windows, "; "))
		}
		if len(s.Webhooks) > 0 {
			p("  webhooks: %s\n", strings.Join(s.Webhooks, "; "))
		}
	}
	p("\nresult: %s\n", r.verdict())
	return bw.Flush()
}

package review

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// MarkdownMarker is the first line of the markdown report, so a CI job can
// find and update its earlier comment (a sticky comment).
const MarkdownMarker = "<!-- gitmesh-diff -->"

// WriteMarkdown renders r as a pull-request comment: a summary table,
// with the details in collapsed <details> blocks.
func (r *Report) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("%s\n", MarkdownMarker)
	p("### gitmesh diff: %s\n\n", r.headline())
	base := code(r.Base.Revision)
	if r.BaseIsLive {
		base += " (live)"
	}
	p("%s → %s\n\n", base, code(r.Head.Revision))

	if r.Base.Error != "" || r.Head.Error != "" {
		for _, s := range []struct {
			name string
			info SideInfo
		}{{"base", r.Base}, {"head", r.Head}} {
			if s.info.Error != "" {
				p(":x: **%s could not be built**\n\n```\n%s\n```\n\n", s.name, strings.ReplaceAll(s.info.Error, "```", "'''"))
			}
		}
		return bw.Flush()
	}

	p("| | |\n|---|---|\n")
	p("| Policy objects | %s |\n", cell(objectSummary(r.Objects)))
	p("| Proxy classes changed | %s |\n", cell(blastSummary(r.Blast)))
	p("| xDS resources | %s |\n", cell(resourceSummary(r.Classes)))
	analyzers := diagnosticSummary(r.Diagnostics)
	if r.Diagnostics.NewErrors > 0 {
		analyzers = ":x: " + analyzers
	}
	p("| Analyzers | %s |\n", cell(analyzers))
	p("| Rollout | %s |\n\n", cell(rolloutLine(r.Rollout, false)))

	if len(r.Objects) > 0 {
		p("<details><summary>Policy changes: %s</summary>\n\n", objectSummary(r.Objects))
		for _, o := range r.Objects {
			p("- %s **%s** %s\n", code(o.ID()), o.Change, code(o.Origin.String()))
			for _, f := range o.Fields {
				line := ""
				if f.Line > 0 {
					line = fmt.Sprintf(" (line %d)", f.Line)
				}
				switch f.Change {
				case Added:
					p("  - %s added %s%s\n", code(f.Path), code(f.New), line)
				case Removed:
					p("  - %s removed (was %s)%s\n", code(f.Path), code(f.Old), line)
				default:
					p("  - %s: %s → %s%s\n", code(f.Path), code(f.Old), code(f.New), line)
				}
			}
		}
		p("\n</details>\n\n")
	}

	for _, g := range groupClasses(r.Classes) {
		who := strings.Join(g.names, ", ")
		if r.Blast.Live {
			noun := "live proxies"
			if g.proxies == 1 {
				noun = "live proxy"
			}
			who += fmt.Sprintf(" — %d %s", g.proxies, noun)
		}
		p("<details><summary>xDS for %s</summary>\n\n", escapeHTML(who))
		p("| | resource | change |\n|---|---|---|\n")
		for _, ch := range g.changes {
			detail := ch.Change
			if ch.Detail != "" {
				detail += ": " + strings.ReplaceAll(ch.Detail, " -> ", " → ")
			}
			p("| %s | %s %s | %s |\n", changeSign(ch.Change), ch.Type, code(ch.Label), cell(detail))
		}
		p("\n</details>\n\n")
	}

	if len(r.Diagnostics.New)+len(r.Diagnostics.Fixed) > 0 {
		open := ""
		if r.Diagnostics.NewErrors > 0 {
			open = " open"
		}
		p("<details%s><summary>Analyzers: %s</summary>\n\n", open, diagnosticSummary(r.Diagnostics))
		for _, d := range r.Diagnostics.New {
			p("- new %s %s %s: %s\n", d.Severity, code(d.Code), code(d.Origin.String()), escapeHTML(d.Message))
		}
		for _, d := range r.Diagnostics.Fixed {
			p("- fixed %s %s %s: %s\n", d.Severity, code(d.Code), code(d.Origin.String()), escapeHTML(d.Message))
		}
		p("\n</details>\n\n")
	}

	if s := r.Rollout; s != nil && (s.Policy != "default" || s.Changed) {
		p("<details><summary>Rollout: %s</summary>\n\n", escapeHTML(s.Policy))
		for i, wv := range s.Waves {
			p("%d. %s\n", i+1, escapeHTML(wv))
		}
		p("\n")
		if len(s.Gates) > 0 {
			p("- gates: %s\n", escapeHTML(strings.Join(s.Gates, "; ")))
		}
		if len(s.Windows) > 0 {
			p("- windows: %s\n", escapeHTML(strings.Join(s.Windows, "; ")))
		}
		if len(s.Webhooks) > 0 {
			p("- webhooks: %s\n", escapeHTML(strings.Join(s.Webhooks, "; ")))
		}
		if s.Changed {
			p("- the RolloutPolicy changes in this revision (was %s)\n", escapeHTML(s.Base))
		}
		p("\n</details>\n\n")
	}
	return bw.Flush()
}

// headline is the comment's title after "gitmesh diff: ".
func (r *Report) headline() string {
	switch {
	case r.Base.Error != "" || r.Head.Error != "":
		return ":x: could not build"
	case r.Diagnostics.NewErrors > 0:
		return ":x: " + plural(r.Diagnostics.NewErrors, "new analyzer error")
	case !r.Changed():
		return "no changes"
	}
	return fmt.Sprintf("%s, %s", plural(len(r.Objects), "object")+" changed", blastSummary(r.Blast)+" affected")
}

// code writes s as an inline code span.
func code(s string) string {
	if s == "" {
		return "` `"
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// cell escapes s for a table cell.
func cell(s string) string {
	return strings.ReplaceAll(escapeHTML(s), "|", `\|`)
}

func escapeHTML(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "\n", " ").Replace(s)
}

package review

import (
	"fmt"
	"io"
	"strings"
)

// Formats Write accepts.
const (
	FormatText     = "text"
	FormatMarkdown = "markdown"
	FormatJSON     = "json"
)

// Write renders r in format (text, markdown or json).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		return r.WriteText(w)
	case FormatMarkdown:
		return r.WriteMarkdown(w)
	case FormatJSON:
		return r.WriteJSON(w)
	}
	return fmt.Errorf("rendering report: unknown format %q (want text, markdown or json)", format)
}

// classGroup is the classes whose config changes the same way, shown once.
type classGroup struct {
	names   []string
	proxies int
	changes []ResourceChange
}

// groupClasses groups the changed classes with identical changes, in
// class order. Classes without changes are left out.
func groupClasses(classes []ClassDiff) []classGroup {
	var out []classGroup
	index := map[string]int{}
	for _, c := range classes {
		if len(c.Changes) == 0 {
			continue
		}
		var key strings.Builder
		for _, ch := range c.Changes {
			fmt.Fprintf(&key, "%s\x00%s\x00%s\x00%s\x01", ch.Type, ch.Name, ch.Change, ch.Detail)
		}
		if i, ok := index[key.String()]; ok {
			out[i].names = append(out[i].names, c.Name)
			out[i].proxies += c.Proxies
			continue
		}
		index[key.String()] = len(out)
		out = append(out, classGroup{names: []string{c.Name}, proxies: c.Proxies, changes: c.Changes})
	}
	return out
}

// resourceCounts counts added, removed and changed resources by type over
// the union of the classes (a resource counted once per distinct change).
func resourceCounts(classes []ClassDiff) map[string][3]int {
	seen := map[string]bool{}
	out := map[string][3]int{}
	for _, c := range classes {
		for _, ch := range c.Changes {
			k := ch.Type + "\x00" + ch.Name + "\x00" + ch.Change + "\x00" + ch.Detail
			if seen[k] {
				continue
			}
			seen[k] = true
			n := out[ch.Type]
			switch ch.Change {
			case Added:
				n[0]++
			case Removed:
				n[1]++
			default:
				n[2]++
			}
			out[ch.Type] = n
		}
	}
	return out
}

// resourceSummary writes "routes ~1, clusters +2, endpoints +2".
func resourceSummary(classes []ClassDiff) string {
	counts := resourceCounts(classes)
	var parts []string
	for _, t := range []struct{ typ, plural string }{
		{TypeListener, "listeners"}, {TypeRoute, "routes"}, {TypeCluster, "clusters"}, {TypeEndpoint, "endpoints"},
	} {
		n, ok := counts[t.typ]
		if !ok {
			continue
		}
		var c []string
		if n[0] > 0 {
			c = append(c, fmt.Sprintf("+%d", n[0]))
		}
		if n[1] > 0 {
			c = append(c, fmt.Sprintf("-%d", n[1]))
		}
		if n[2] > 0 {
			c = append(c, fmt.Sprintf("~%d", n[2]))
		}
		parts = append(parts, t.plural+" "+strings.Join(c, " "))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

// objectSummary writes "1 added, 2 changed, 1 removed" or "no change".
func objectSummary(objs []ObjectDiff) string {
	var a, c, d int
	for _, o := range objs {
		switch o.Change {
		case Added:
			a++
		case Removed:
			d++
		default:
			c++
		}
	}
	var parts []string
	if a > 0 {
		parts = append(parts, fmt.Sprintf("%d added", a))
	}
	if c > 0 {
		parts = append(parts, fmt.Sprintf("%d changed", c))
	}
	if d > 0 {
		parts = append(parts, fmt.Sprintf("%d removed", d))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

// diagnosticSummary writes "1 new error, 1 fixed" or "no new findings".
func diagnosticSummary(d DiagnosticsDiff) string {
	var parts []string
	if d.NewErrors > 0 {
		parts = append(parts, plural(d.NewErrors, "new error"))
	}
	if other := len(d.New) - d.NewErrors; other > 0 {
		parts = append(parts, plural(other, "new warning"))
	}
	if len(d.Fixed) > 0 {
		parts = append(parts, fmt.Sprintf("%d fixed", len(d.Fixed)))
	}
	if len(parts) == 0 {
		return "no new findings"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

// blastSummary writes "2 of 3 proxy classes (5 of 7 live proxies)".
func blastSummary(b BlastRadius) string {
	s := fmt.Sprintf("%d of %d proxy classes", b.Classes, b.Total)
	if b.Live {
		s += fmt.Sprintf(" (%d of %d live proxies)", b.Proxies, b.LiveTotal)
	}
	return s
}

// rolloutLine writes the rollout in one line; verbose adds what the
// RolloutPolicy was when it changed.
func rolloutLine(s *RolloutSummary, verbose bool) string {
	if s == nil {
		return "-"
	}
	line := strings.Join(s.Waves, ", ")
	if s.Policy != "default" {
		line = "RolloutPolicy " + s.Policy + ": " + line
	} else {
		line = "default (no RolloutPolicy): " + line
	}
	switch {
	case s.Changed && verbose:
		line += " (RolloutPolicy changed, was " + s.Base + ")"
	case s.Changed:
		line += " (RolloutPolicy changed)"
	}
	if !s.Rolls {
		line += "; no rollout: compiled config is unchanged"
	}
	return line
}

// verdict says what the exit code means.
func (r *Report) verdict() string {
	switch {
	case r.Base.Error != "" || r.Head.Error != "":
		return "error: a revision could not be fetched or built"
	case r.Diagnostics.NewErrors > 0:
		return "error: head has new analyzer errors"
	case r.Changed():
		return "changes"
	}
	return "no changes"
}

func changeSign(c string) string {
	switch c {
	case Added:
		return "+"
	case Removed:
		return "-"
	}
	return "~"
}

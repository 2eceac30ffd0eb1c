package review

import (
	"github.com/gitmesh/gitmesh/compiler"
)

// DiagnosticsDiff is how the analyzers' findings change from base to head.
type DiagnosticsDiff struct {
	// New are head's findings that base does not have (head file:line).
	New compiler.Diagnostics `json:"new"`
	// Fixed are base's findings that head no longer has (base file:line).
	Fixed compiler.Diagnostics `json:"fixed"`
	// Unchanged counts the findings both sides have.
	Unchanged int `json:"unchanged"`
	// NewErrors counts the errors among New: any makes `gitmesh diff` exit 2.
	NewErrors int `json:"newErrors"`
}

// diagKey identifies a finding regardless of where it moved in its file.
func diagKey(d compiler.Diagnostic) string {
	return d.Code + "\x00" + string(d.Severity) + "\x00" + d.Kind + "\x00" + d.Namespace + "\x00" +
		d.Name + "\x00" + d.Field + "\x00" + d.Origin.File + "\x00" + d.Message
}

// diffDiagnostics matches findings by code, object, field, file and
// message (not line, which shifts with unrelated edits), as multisets.
func diffDiagnostics(base, head compiler.Diagnostics) DiagnosticsDiff {
	out := DiagnosticsDiff{New: compiler.Diagnostics{}, Fixed: compiler.Diagnostics{}}
	count := map[string]int{}
	for _, d := range base {
		count[diagKey(d)]++
	}
	for _, d := range head {
		k := diagKey(d)
		if count[k] > 0 {
			count[k]--
			out.Unchanged++
			continue
		}
		out.New = append(out.New, d)
		if d.Severity == compiler.SeverityError {
			out.NewErrors++
		}
	}
	left := map[string]int{}
	for _, d := range head {
		left[diagKey(d)]++
	}
	for _, d := range base {
		k := diagKey(d)
		if left[k] > 0 {
			left[k]--
			continue
		}
		out.Fixed = append(out.Fixed, d)
	}
	return out
}

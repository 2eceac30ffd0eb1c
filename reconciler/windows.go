package reconciler

import (
	"fmt"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
)

// windowsAllow reports whether a rollout may start at now under windows,
// and if not, why and until when: inside a deny window it waits for the
// window's end; with allow windows and none open it waits for the next one
// to open. Schedules were validated by the compiler; one that does not
// parse is skipped.
func windowsAllow(windows []v1alpha1.Window, now time.Time) (bool, string) {
	parser := v1alpha1.CronParser()
	var (
		denyUntil  time.Time
		denyName   string
		haveAllow  bool
		allowOpen  bool
		nextAllow  time.Time
		allowNames string
	)
	for i, w := range windows {
		sched, err := parser.Parse(w.Schedule)
		if err != nil {
			continue
		}
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("windows[%d] %q", i, w.Schedule)
		}
		// The window is open when it started within the last Duration:
		// the first start after now-Duration is not after now.
		start := sched.Next(now.Add(-w.Duration.Duration))
		open := !start.After(now)
		switch w.Action {
		case v1alpha1.WindowDeny:
			if end := start.Add(w.Duration.Duration); open && end.After(denyUntil) {
				denyUntil, denyName = end, name
			}
		case v1alpha1.WindowAllow:
			haveAllow = true
			allowOpen = allowOpen || open
			if n := sched.Next(now); nextAllow.IsZero() || n.Before(nextAllow) {
				nextAllow, allowNames = n, name
			}
		}
	}
	if !denyUntil.IsZero() {
		return false, fmt.Sprintf("deny window %s is open until %s", denyName, denyUntil.UTC().Format(time.RFC3339))
	}
	if haveAllow && !allowOpen {
		return false, fmt.Sprintf("outside every allow window; next opens at %s (%s)", nextAllow.UTC().Format(time.RFC3339), allowNames)
	}
	return true, ""
}

package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/reconciler"
)

// watchOptions are status --watch's flags.
type watchOptions struct {
	watch    bool
	interval time.Duration
	// timeout bounds the watch; 0 waits until the rollout settles.
	timeout time.Duration
	// revision, when set, is a commit the controller must attempt before
	// the rollout it shows can settle the watch.
	revision string
	output   string
	// terminal redraws in place; otherwise each change is appended.
	terminal bool
	// stderr gets the closing summary with -o json (stdout holds only
	// JSON then); nil discards it.
	stderr io.Writer
}

// statusGetter reads the admin API (adminClient in the CLI).
type statusGetter interface {
	get(ctx context.Context, path string, v any) error
}

// clearScreen moves the cursor home and clears the screen (ANSI).
const clearScreen = "\033[H\033[2J"

// watchStatus polls the status every o.interval and draws it until the
// rollout settles (see settle), o.timeout passes, or ctx is cancelled (an
// interrupt: exit 0). It returns an exitError with code 1 when the rollout
// did not end promoted.
func watchStatus(ctx context.Context, c statusGetter, w io.Writer, o watchOptions) error {
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	t := time.NewTicker(max(o.interval, 10*time.Millisecond))
	defer t.Stop()
	// A commit pushed just before the watch may not have been fetched yet:
	// without --revision, an ended rollout or an idle controller settles
	// the watch only once a pass has started since the first status read
	// (or a rollout was seen in flight), as kubectl waits for the
	// controller to observe the newest generation.
	var fresh freshness
	var last []byte
	for {
		var st admin.Status
		err := c.get(ctx, "/api/v1/status", &st)
		switch {
		case err != nil && ctx.Err() != nil:
			return watchEnded(ctx, o.timeout)
		case err != nil:
			return &exitError{2, err}
		}
		frame, err := renderFrame(&st, o.output)
		if err != nil {
			return err
		}
		switch {
		case o.terminal && o.output != "json":
			fmt.Fprint(w, clearScreen)
			w.Write(frame)
		case !bytes.Equal(frame, last):
			if last != nil && o.output != "json" {
				fmt.Fprintln(w)
			}
			w.Write(frame)
		}
		last = frame
		observed := fresh.observed(&st, o.revision)
		if s := settle(&st, o.revision); s.done && observed {
			msg := w
			if o.output == "json" {
				msg = cmp.Or(o.stderr, io.Discard)
			}
			fmt.Fprintln(msg, s.summary)
			if s.failed {
				return &exitError{code: 1}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return watchEnded(ctx, o.timeout)
		case <-t.C:
		}
	}
}

// freshness tells whether a status reflects what was pushed before the
// watch began.
type freshness struct {
	seen      bool
	firstPass time.Time // LastReconcileTime of the first status read
	inFlight  bool      // a rollout was seen in flight
}

// observed records st and reports whether it may settle the watch: with a
// revision (settle waits for that one), once a rollout was in flight during
// the watch, or once a pass started after the first status read.
func (f *freshness) observed(st *admin.Status, revision string) bool {
	if !f.seen {
		f.seen, f.firstPass = true, st.LastReconcileTime
	}
	if st.Rollout != nil && !st.Rollout.Phase.Done() {
		f.inFlight = true
	}
	return revision != "" || f.inFlight || st.LastReconcileTime.After(f.firstPass)
}

// watchEnded is the result of a watch whose context ended first.
func watchEnded(ctx context.Context, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &exitError{1, fmt.Errorf("timed out after %s waiting for the rollout to settle", timeout)}
	}
	return nil // interrupted
}

// renderFrame renders one status: text, or a JSON document without the
// fields that change on every poll, so that an unchanged status is not
// written again.
func renderFrame(st *admin.Status, output string) ([]byte, error) {
	var b bytes.Buffer
	if output == "json" {
		cp := *st
		cp.LastReconcileTime = time.Time{}
		if err := json.NewEncoder(&b).Encode(cp); err != nil {
			return nil, fmt.Errorf("encoding status: %w", err)
		}
		return b.Bytes(), nil
	}
	printStatus(&b, st)
	return b.Bytes(), nil
}

// settlement says whether a watch is over and how it ended.
type settlement struct {
	done, failed bool
	summary      string
}

// settle decides from one status whether the rollout settled, as
// `kubectl rollout status` does: a rollout in flight, a first pass not yet
// done, or a fetch failing (Git may come back) keep the watch going; a
// revision refused before its rollout, or a rollout that ended otherwise
// than Promoted, fail it; Promoted, or nothing in flight with Ready True,
// succeed. With revision set, only that revision's rollout, refusal or
// adoption settles it.
func settle(st *admin.Status, revision string) settlement {
	ro := st.Rollout
	ready := st.Ready()
	if ro != nil && !ro.Phase.Done() {
		return settlement{}
	}
	if ready == nil || ready.Status == metav1.ConditionUnknown || (ready.Status == metav1.ConditionFalse && ready.Reason == reconciler.ReasonFetchFailed) {
		return settlement{}
	}
	refused := ready.Status == metav1.ConditionFalse && ready.Reason != reconciler.ReasonRolloutFailed
	if revision != "" {
		switch {
		case ro != nil && reconciler.MatchesRevision(ro.Revision, revision):
			return rolloutSettled(ro)
		case refused && reconciler.MatchesRevision(st.LastAttemptedRevision, revision) && strings.Contains(ready.Message, st.LastAttemptedRevision):
			return refusal(st, ready)
		case ready.Status == metav1.ConditionTrue && reconciler.MatchesRevision(st.LastAppliedRevision, revision):
			return settlement{done: true, summary: "serving " + st.LastAppliedRevision}
		}
		return settlement{}
	}
	switch {
	case refused:
		return refusal(st, ready)
	case ro != nil:
		return rolloutSettled(ro)
	case ready.Status == metav1.ConditionFalse:
		return settlement{done: true, failed: true, summary: fmt.Sprintf("%s: %s", ready.Reason, ready.Message)}
	}
	return settlement{done: true, summary: "nothing in flight; serving " + orNone(st.LastAppliedRevision)}
}

// refusal is the settlement of a revision refused before its rollout.
func refusal(st *admin.Status, ready *metav1.Condition) settlement {
	return settlement{done: true, failed: true, summary: fmt.Sprintf("%s %s (%s): %s", orNone(st.LastAttemptedRevision), admin.PhaseRefused, ready.Reason, ready.Message)}
}

// rolloutSettled is the settlement of a finished rollout.
func rolloutSettled(ro *admin.Rollout) settlement {
	summary := fmt.Sprintf("rollout #%d of %s %s", ro.ID, ro.Revision, ro.Phase)
	if ro.Reason != "" {
		summary += ": " + ro.Reason
	}
	switch {
	case ro.Phase.Succeeded():
		return settlement{done: true, summary: summary}
	case ro.Phase == admin.PhaseSuperseded:
		return settlement{} // the superseding rollout is about to be shown
	}
	return settlement{done: true, failed: true, summary: summary}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

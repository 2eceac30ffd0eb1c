package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/admin"
)

// newOpCmd builds promote/abort/pause/resume/rollback: each POSTs a
// admin.Request to /api/v1/rollout.
func newOpCmd(op, use, short, long string, flags func(*cobra.Command, *admin.Request)) *cobra.Command {
	req := admin.Request{Op: op}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + "\n\nNeeds the admin token (--token-file, GITMESH_TOKEN or the gitmesh login context).\n\nExit codes: 0 done, 1 nothing to do (e.g. no rollout in flight), 2 could not do it.",
		Args:  cobra.NoArgs,
	}
	c := clientFlags(cmd, true)
	if flags != nil {
		flags(cmd, &req)
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var res admin.Response
		if err := c.post(cmd.Context(), "/api/v1/rollout", req, &res); err != nil {
			if ae, ok := err.(*apiError); ok && ae.code == 409 {
				fmt.Fprintln(cmd.OutOrStdout(), ae.msg)
				return &exitError{code: 1}
			}
			return &exitError{2, err}
		}
		fmt.Fprintln(cmd.OutOrStdout(), res.Message)
		return nil
	}
	return cmd
}

func newRolloutCmds() []*cobra.Command {
	return []*cobra.Command{
		newOpCmd(admin.OpPromote, "promote [--full]", "Skip the current wave's bake and gates (--full: every remaining wave)",
			"Promote the rollout in flight: start the next wave now, or with --full give the revision to every proxy.",
			func(cmd *cobra.Command, r *admin.Request) {
				cmd.Flags().BoolVar(&r.Full, "full", false, "skip every remaining wave")
			}),
		newOpCmd(admin.OpAbort, "abort", "Roll the rollout in flight back",
			"Abort the rollout in flight: every updated proxy goes back to the last good revision, the rollout ends Aborted, and the revision is not retried until a new commit arrives or 'gitmesh resume'.", nil),
		newOpCmd(admin.OpPause, "pause", "Hold the rollout in flight where it is",
			"Pause the rollout in flight: no wave starts or ends until 'gitmesh resume'. Proxies keep what they run.", nil),
		newOpCmd(admin.OpResume, "resume", "Resume a paused rollout, or release a rollback's hold",
			"Resume a paused rollout (the current wave bakes afresh), or release the hold a manual rollback set, so the newest revision is rolled out again.", nil),
		newOpCmd(admin.OpRollback, "rollback [--to ID|REVISION]", "Roll the fleet back to the last good (or a named good) revision",
			`Roll the fleet back at once, without waves: with a rollout in flight, to the
last good revision (the rollout ends Aborted); otherwise to the revision
promoted before the current one; with --to, to that previously promoted
revision, named by its 'gitmesh history' id (4 or #4), a full revision, a
commit SHA or a unique SHA prefix; the answer says which it matched. The
record of a rollback shows in history as ManualRollback. The controller then
holds there until a new commit arrives or 'gitmesh resume'.`,
			func(cmd *cobra.Command, r *admin.Request) {
				cmd.Flags().StringVar(&r.To, "to", "", "what to roll back to: a history `ID` (4 or #4), main@sha1:..., a SHA or a unique SHA prefix")
			}),
	}
}

func newHistoryCmd() *cobra.Command {
	var (
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history [--limit N] [-o text|json]",
		Short: "Show past rollouts and refused revisions with their outcomes",
		Long: `Show the history, newest first: every rollout (id, revision, trigger, outcome,
the wave it reached of how many, start, duration, reason) and every revision
refused before its rollout (it failed to build, validate or compile) with
its first diagnostics (file:line). Outcomes: Promoted, RolledBack (by a NACK
or a failed analysis), Failed (a progress deadline), Aborted (by a person),
Superseded, ManualRollback ('gitmesh rollback' to that revision) and
Refused; a rollout in flight shows its phase. 'gitmesh rollback --to ID'
takes an id of this list.

Exit codes: 0 shown, 2 the controller could not be reached.`,
		Args: cobra.NoArgs,
	}
	c := clientFlags(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var h []admin.Rollout
		if err := c.get(cmd.Context(), fmt.Sprintf("/api/v1/history?limit=%d", limit), &h); err != nil {
			return &exitError{2, err}
		}
		if output == "json" {
			return printJSON(cmd.OutOrStdout(), h)
		}
		return printHistory(cmd.OutOrStdout(), h)
	}
	outputFlag(cmd, &output, "text", "json")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many records to show (`N`; 0: all)")
	return cmd
}

// printHistory writes h as a table.
func printHistory(w io.Writer, h []admin.Rollout) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREVISION\tTRIGGER\tOUTCOME\tWAVE\tSTARTED\tDURATION\tREASON")
	for _, ro := range h {
		dur := "-"
		if !ro.FinishedAt.IsZero() {
			dur = ro.FinishedAt.Sub(ro.StartedAt).Round(time.Millisecond).String()
		}
		wave := "-"
		if n := ro.WaveNumber(); n > 0 {
			wave = fmt.Sprintf("%d/%d", n, len(ro.Waves))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ro.ID, ro.Revision, ro.Trigger, ro.Phase, wave, ro.StartedAt.Format(time.RFC3339), dur, historyReason(ro))
	}
	return tw.Flush()
}

// historyReason is a record's reason on one line; for a refused revision,
// the Ready reason and its first diagnostic (file:line).
func historyReason(ro admin.Rollout) string {
	if len(ro.Diagnostics) == 0 {
		return ro.Reason
	}
	code, _, _ := strings.Cut(ro.Reason, ":")
	s := code + ": " + ro.Diagnostics[0].String()
	if n := len(ro.Diagnostics) - 1; n > 0 {
		s += fmt.Sprintf(" (+%d more, see -o json)", n)
	}
	return s
}

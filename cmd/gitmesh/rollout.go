package main

import (
	"encoding/json"
	"fmt"
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
		Long:  long + "\n\nNeeds the admin token (--token-file or GITMESH_TOKEN).\n\nExit codes: 0 done, 1 nothing to do (e.g. no rollout in flight), 2 could not do it.",
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
			"Abort the rollout in flight: every updated proxy goes back to the last good revision, and the revision is not retried until a new commit arrives.", nil),
		newOpCmd(admin.OpPause, "pause", "Hold the rollout in flight where it is",
			"Pause the rollout in flight: no wave starts or ends until 'gitmesh resume'. Proxies keep what they run.", nil),
		newOpCmd(admin.OpResume, "resume", "Resume a paused rollout, or release a rollback's hold",
			"Resume a paused rollout (the current wave bakes afresh), or release the hold a manual rollback set, so the newest revision is rolled out again.", nil),
		newOpCmd(admin.OpRollback, "rollback [--to REVISION]", "Roll the fleet back to the last good (or a named good) revision",
			`Roll the fleet back at once, without waves: with a rollout in flight, to the
last good revision; otherwise to the revision promoted before the current one;
with --to, to that previously promoted revision (a full revision, a commit SHA
or a unique SHA prefix). The controller then holds there until a new commit
arrives or 'gitmesh resume'.`,
			func(cmd *cobra.Command, r *admin.Request) {
				cmd.Flags().StringVar(&r.To, "to", "", "revision to roll back to: main@sha1:..., a SHA or a unique SHA prefix")
			}),
	}
}

func newHistoryCmd() *cobra.Command {
	var (
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history [--limit N]",
		Short: "Show past rollouts and their outcomes",
		Long:  "Show past rollouts, newest first: revision, trigger, outcome, reason, waves and timings.\n\nExit codes: 0 shown, 2 the controller could not be reached.",
		Args:  cobra.NoArgs,
	}
	c := clientFlags(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var h []admin.Rollout
		if err := c.get(cmd.Context(), fmt.Sprintf("/api/v1/history?limit=%d", limit), &h); err != nil {
			return &exitError{2, err}
		}
		if output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(h)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tREVISION\tTRIGGER\tOUTCOME\tWAVES\tSTARTED\tDURATION\tREASON")
		for _, ro := range h {
			dur := "-"
			if !ro.FinishedAt.IsZero() {
				dur = ro.FinishedAt.Sub(ro.StartedAt).Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", ro.ID, ro.Revision, ro.Trigger, ro.Phase, len(ro.Waves), ro.StartedAt.Format(time.RFC3339), dur, ro.Reason)
		}
		return tw.Flush()
	}
	outputFlag(cmd, &output, "text", "json")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many rollouts to show (0: all)")
	return cmd
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/admin"
)

func newStatusCmd() *cobra.Command {
	var (
		output string
		wo     watchOptions
	)
	cmd := &cobra.Command{
		Use:   "status [--watch [--revision SHA] [--timeout D]]",
		Short: "Show the applied revision, the rollout's progress and each proxy's sync state",
		Long: `Show what the controller serves: the last applied (last good) and last attempted
revision, the Ready condition with its reason and message (file:line when a
revision failed), the rollout in flight (phase, wave k/n, analysis readings
against their thresholds, what it waits for), and each connected proxy with
its wave and state: SYNCED (runs what it was assigned), STALE (not yet) or
NACKED (rejected it). Waves are numbered from 1, in text and in JSON.

--watch polls every --interval until the rollout settles, as
'kubectl rollout status' does: it exits 0 once the rollout is Promoted (or
when nothing is in flight and Ready is True), and 1 once it ended otherwise
(RolledBack, Failed, Aborted, ManualRollback) or the newest revision was
Refused (it failed to build, validate or compile). A rollout that has
already ended, or an idle controller, settles the watch only after the
controller's next pass has started (at once after a webhook, else within
its poll interval), so a commit pushed just before is seen. --revision waits for
that commit first (a SHA, a SHA prefix or a full revision), so a script can
run it right after 'git push'. On a terminal the status is redrawn in
place; otherwise (a file, a pipe) each change is appended, without escape
sequences. With -o json, each change is one JSON document.

Exit codes: 0 shown, or (--watch) promoted; 1 (--watch) rolled back,
failed, aborted or refused, or --timeout reached; 2 the controller could
not be reached.`,
		Args: cobra.NoArgs,
	}
	c := clientFlags(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !wo.watch {
			var st admin.Status
			if err := c.get(cmd.Context(), "/api/v1/status", &st); err != nil {
				return &exitError{2, err}
			}
			return writeStatus(cmd.OutOrStdout(), &st, output)
		}
		wo.output, wo.terminal, wo.stderr = output, isTerminal(cmd.OutOrStdout()), cmd.ErrOrStderr()
		return watchStatus(cmd.Context(), c, cmd.OutOrStdout(), wo)
	}
	outputFlag(cmd, &output, "text", "json")
	cmd.Flags().BoolVarP(&wo.watch, "watch", "w", false, "poll until the rollout settles; the exit code says how it ended")
	cmd.Flags().DurationVar(&wo.interval, "interval", time.Second, "poll `interval` with --watch")
	cmd.Flags().DurationVar(&wo.timeout, "timeout", 0, "with --watch, give up (exit 1) after this `duration`; 0 waits forever")
	cmd.Flags().StringVar(&wo.revision, "revision", "", "with --watch, wait for this commit (`SHA`, SHA prefix or revision) to be attempted first")
	return cmd
}

// printJSON writes v as indented JSON, the -o json of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeStatus writes st as text or JSON.
func writeStatus(w io.Writer, st *admin.Status, output string) error {
	if output == "json" {
		return printJSON(w, st)
	}
	printStatus(w, st)
	return nil
}

func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "Revision:   %s\n", orNone(st.LastAppliedRevision))
	fmt.Fprintf(w, "Version:    %s\n", orNone(st.LastAppliedVersion))
	fmt.Fprintf(w, "Attempted:  %s\n", orNone(st.LastAttemptedRevision))
	if c := st.Ready(); c != nil {
		fmt.Fprintf(w, "Ready:      %s (%s) %s\n", c.Status, c.Reason, c.Message)
	}
	if h := st.Hold; h != nil {
		fmt.Fprintf(w, "Hold:       on %s since %s (a new commit or 'gitmesh resume' releases it)\n", h.Revision, h.Since.Format(time.RFC3339))
	}
	if st.CA != nil {
		printCA(w, st.CA)
	}
	wave := map[string]string{}
	if ro := st.Rollout; ro != nil {
		fmt.Fprintf(w, "\nRollout #%d: %s  %s", ro.ID, ro.Revision, ro.Phase)
		if n := ro.WaveNumber(); n > 0 {
			fmt.Fprintf(w, "  wave %d/%d", n, len(ro.Waves))
		}
		if ro.Phase.Done() {
			fmt.Fprintf(w, "  (finished %s)", ro.FinishedAt.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		if ro.Waiting != "" {
			fmt.Fprintf(w, "  waiting: %s\n", ro.Waiting)
		}
		if ro.Reason != "" {
			fmt.Fprintf(w, "  reason:  %s\n", ro.Reason)
		}
		for i, wv := range ro.Waves {
			fmt.Fprintf(w, "  %-10s %d proxies%s\n", wv.Name, len(wv.Nodes), waveTimes(wv))
			for _, id := range wv.Nodes {
				wave[id] = fmt.Sprintf("%d", i+1)
			}
		}
		if len(ro.Readings) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  METRIC\tVALUE\tTHRESHOLD\tREQUESTS\tRESULT\tDETAIL")
			for _, rd := range ro.Readings {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%.0f\t%s\t%s\n", rd.Metric, rd.FormatValue(), rd.Threshold, rd.Requests, rd.Result, rd.Message)
			}
			tw.Flush()
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// In the Kubernetes mode proxies name their pod: show it.
	pods := false
	for _, p := range st.Proxies {
		pods = pods || p.Pod != ""
	}
	podCol := func(p admin.ProxyStatus) string {
		if !pods {
			return ""
		}
		return orNone(p.Pod) + "\t"
	}
	if pods {
		fmt.Fprintln(tw, "PROXY\tSERVICE\tNAMESPACE\tPOD\tROLE\tWAVE\tSTATE\tREVISION\tDETAIL")
	} else {
		fmt.Fprintln(tw, "PROXY\tSERVICE\tNAMESPACE\tROLE\tWAVE\tSTATE\tREVISION\tDETAIL")
	}
	for _, p := range st.Proxies {
		state := string(p.State)
		if !p.Connected {
			state = "DISCONNECTED"
		}
		detail := ""
		if p.NACK != nil {
			detail = "NACK: " + p.NACK.Error
		} else if p.Acked != p.Assigned {
			detail = "applying version " + p.Assigned
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\n", p.ID, p.Service, p.Namespace, podCol(p), p.Role, orNone(wave[p.ID]), state, orNone(shortRevision(p.Revision)), detail)
	}
	tw.Flush()
	if len(st.Proxies) == 0 {
		fmt.Fprintln(w, "(no proxies connected)")
	}
}

func waveTimes(wv admin.WaveRecord) string {
	var parts []string
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"started", wv.StartedAt}, {"synced", wv.SyncedAt}, {"baked", wv.BakedAt}} {
		if !t.at.IsZero() {
			parts = append(parts, t.name+" "+t.at.Format("15:04:05.000"))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "  (" + strings.Join(parts, ", ") + ")"
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fetchStatus reads the controller's status from base.
func fetchStatus(ctx context.Context, base string) (*admin.Status, error) {
	c := &adminClient{base: base, http: &http.Client{Timeout: 10 * time.Second}}
	var st admin.Status
	if err := c.get(ctx, "/api/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// shortRevision writes main@sha1:<40 hex> as main@sha1:<12 hex>.
func shortRevision(rev string) string {
	if i := strings.Index(rev, "sha1:"); i >= 0 && len(rev) > i+5+12 {
		return rev[:i+5+12]
	}
	return rev
}

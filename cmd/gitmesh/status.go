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

	"github.com/gitmesh/gitmesh/reconciler"
)

func newStatusCmd() *cobra.Command {
	var (
		output string
		ctrl   string
	)
	cmd := &cobra.Command{
		Use:   "status [--controller URL]",
		Short: "Show the applied revision, the Ready condition and each proxy's sync state",
		Long: `Show what the controller serves: the last applied and last attempted revision,
the Ready condition with its reason and message (file:line when a revision
failed), and each connected proxy with its state: SYNCED (runs the assigned
version), STALE (not yet) or NACKED (rejected it).

Exit codes: 0 shown, 2 the controller could not be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fetchStatus(cmd.Context(), ctrl)
			if err != nil {
				return &exitError{2, err}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	outputFlag(cmd, &output, "text", "json")
	controllerFlag(cmd, &ctrl)
	return cmd
}

// controllerFlag adds --controller (default $GITMESH_CONTROLLER).
func controllerFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "controller", envOr("GITMESH_CONTROLLER", "http://"+defaultAdminAddr), "controller admin API URL (env GITMESH_CONTROLLER)")
}

func fetchStatus(ctx context.Context, base string) (*reconciler.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimRight(base, "/") + "/api/v1/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("querying controller: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying controller at %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("querying controller at %s: %s: %s", base, resp.Status, strings.TrimSpace(string(b)))
	}
	var st reconciler.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decoding controller status: %w", err)
	}
	return &st, nil
}

func printStatus(w io.Writer, st *reconciler.Status) {
	fmt.Fprintf(w, "Revision:   %s\n", orNone(st.LastAppliedRevision))
	fmt.Fprintf(w, "Version:    %s\n", orNone(st.LastAppliedVersion))
	fmt.Fprintf(w, "Attempted:  %s\n", orNone(st.LastAttemptedRevision))
	if c := st.Ready(); c != nil {
		fmt.Fprintf(w, "Ready:      %s (%s) %s\n", c.Status, c.Reason, c.Message)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROXY\tSERVICE\tNAMESPACE\tROLE\tSTATE\tVERSION\tDETAIL")
	for _, p := range st.Proxies {
		state := string(p.State)
		if !p.Connected {
			state = "DISCONNECTED"
		}
		detail := ""
		if p.NACK != nil {
			detail = "NACK: " + p.NACK.Error
		} else if p.Acked != p.Assigned {
			detail = "assigned " + reconciler.PolicyVersionOf(p.Assigned)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Service, p.Namespace, p.Role, state, orNone(reconciler.PolicyVersionOf(p.Acked)), detail)
	}
	tw.Flush()
	if len(st.Proxies) == 0 {
		fmt.Fprintln(w, "(no proxies connected)")
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/sds"
)

// addCAFlags adds the mesh CA's flags of `gitmesh controller` to f.
func addCAFlags(f *pflag.FlagSet, c *controller.CAConfig) {
	f.StringVar(&c.TrustDomain, "trust-domain", ca.DefaultTrustDomain, "trust domain of the SPIFFE ids issued to proxies (spiffe://<trust-domain>/ns/<namespace>/sa/<service account>)")
	f.StringVar(&c.CertFile, "ca-cert", "", "operator-supplied CA root certificate (PEM); default: a root generated on first start and kept in <state-dir>/ca (in cluster mode the Secret <name>-ca)")
	f.StringVar(&c.KeyFile, "ca-key", "", "private key of --ca-cert (PEM)")
	f.StringVar(&c.TrustedRootsFile, "ca-trusted-roots", "", "extra roots (PEM) trusted beside --ca-cert, e.g. the previous root while replacing it (docs/security.md)")
	f.DurationVar(&c.CertTTL, "cert-ttl", ca.DefaultCertTTL, "lifetime of workload certificates; each is renewed when half of it is left")
	f.DurationVar(&c.RotationAckTimeout, "ca-rotation-ack-timeout", sds.DefaultAckTimeout, "how long each phase of 'gitmesh ca rotate' waits for the proxies' ACKs")
}

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show, rotate or prune the mesh CA's root",
		Long: `The controller's certificate authority issues every proxy a short-lived
certificate with its SPIFFE id, over SDS. These commands show its root and
rotate it (docs/security.md).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCAStatusCmd(), newCAOpCmd(admin.CAOpRotate), newCAOpCmd(admin.CAOpPrune))
	return cmd
}

func newCAStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the CA's root, trust bundle and workload certificates",
		Long:  "Show the CA's root (fingerprint, expiry), the size of the trust bundle and the proxies' certificates.\n\nExit codes: 0 shown, 2 the controller could not be reached.",
		Args:  cobra.NoArgs,
	}
	c := clientFlags(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var st admin.CAStatus
		if err := c.get(cmd.Context(), "/api/v1/ca", &st); err != nil {
			return &exitError{2, err}
		}
		if output == "json" {
			return printJSON(cmd.OutOrStdout(), st)
		}
		printCA(cmd.OutOrStdout(), &st)
		return nil
	}
	outputFlag(cmd, &output, "text", "json")
	return cmd
}

func newCAOpCmd(op string) *cobra.Command {
	req := admin.CARequest{Op: op}
	cmd := &cobra.Command{Args: cobra.NoArgs}
	switch op {
	case admin.CAOpRotate:
		cmd.Use = "rotate"
		cmd.Short = "Rotate the CA's root: new trust bundle first, then new certificates"
		cmd.Long = `Generate a new root and switch to it in two phases: every proxy is first given
the trust bundle of the old and the new root (ROOTCA) and the controller waits
until each connected proxy ACKed it (at most --ca-rotation-ack-timeout); then
every workload certificate is reissued from the new root. The old root stays
trusted until 'gitmesh ca prune'. The new root is persisted before anything
is pushed. An operator-supplied root (--ca-cert) is rotated by replacing the
files instead (docs/security.md).`
	case admin.CAOpPrune:
		cmd.Use = "prune [--force]"
		cmd.Short = "Stop trusting the roots a rotation kept"
		cmd.Long = `Drop every root but the signing one from the trust bundle, persist that and
push it to every proxy. Refused while a connected proxy still holds a
certificate of an earlier root, unless --force (that proxy's peers then
refuse it until it is reissued).`
		cmd.Flags().BoolVar(&req.Force, "force", false, "prune even though proxies still hold certificates of an earlier root")
	}
	cmd.Long += "\n\nNeeds the admin token (--token-file or GITMESH_TOKEN).\n\nExit codes: 0 done, 1 refused (see the message), 2 could not do it."
	c := clientFlags(cmd, true)
	c.http.Timeout = 5 * time.Minute // a rotation waits for the fleet twice
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var res admin.CAResponse
		if err := c.post(cmd.Context(), "/api/v1/ca", req, &res); err != nil {
			if ae, ok := err.(*apiError); ok && ae.code == 409 {
				fmt.Fprintln(cmd.OutOrStdout(), ae.msg)
				return &exitError{code: 1}
			}
			return &exitError{2, err}
		}
		fmt.Fprintln(cmd.OutOrStdout(), res.Message)
		for _, l := range []struct {
			name string
			ids  []string
		}{{"bundle not ACKed by", res.BundlePending}, {"new certificate not ACKed by", res.ReissuePending}} {
			if len(l.ids) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s: %s\n", l.name, strings.Join(l.ids, ", "))
			}
		}
		printCA(cmd.OutOrStdout(), &res.Status)
		return nil
	}
	return cmd
}

// printCA writes the CA's status.
func printCA(w io.Writer, st *admin.CAStatus) {
	src := "generated"
	if st.OperatorSupplied {
		src = "operator-supplied"
	}
	fmt.Fprintf(w, "CA:         %s root sha256:%s, expires %s, trust bundle %d root(s), trust domain %s\n",
		src, st.RootFingerprint, st.RootNotAfter.Format(time.RFC3339), st.TrustedRoots, st.TrustDomain)
	if st.Workloads > 0 {
		fmt.Fprintf(w, "            %d workload certificate(s), next expiry %s\n", st.Workloads, st.NextExpiry.Format(time.RFC3339))
	}
	if len(st.OldRootWorkloads) > 0 {
		fmt.Fprintf(w, "            on an earlier root: %s\n", strings.Join(st.OldRootWorkloads, ", "))
	}
}

package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/pprofhttp"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/sources/git"
)

// Default listen addresses of the controller.
const (
	defaultXDSAddr   = "127.0.0.1:15010"
	defaultAdminAddr = "127.0.0.1:15000"
)

func newControllerCmd(g *globalFlags) *cobra.Command {
	var cfg controller.Config
	inj := new(injectorFlags)
	cl := new(clusterFlags)
	var kubeMode bool
	var kubeconfig, pprofAddr string
	cmd := &cobra.Command{
		Use:   "controller --repo URL [--branch B|--tag T|--semver R|--commit SHA] [--path DIR] [--secret-dir DIR]",
		Short: "Run the reconciler and the xDS server",
		Long: `Run the gitmesh controller: poll a Git repository for mesh policy, validate and
compile each new revision, and serve it to proxies over ADS. A revision that
fails any step never reaches a proxy: the last good one keeps serving, and
'gitmesh status' says why with file:line.

With --kubernetes (the default inside a pod) services and endpoints come from
the cluster's Services, EndpointSlices and Pods; policy still comes from Git
(docs/kubernetes.md).

Exit codes: 0 stopped cleanly, 2 could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.RepoURL == "" {
				return &exitError{2, errors.New("--repo is required")}
			}
			if n := countSet(cfg.Ref.Branch, cfg.Ref.Tag, cfg.Ref.SemVer, cfg.Ref.Commit); n > 1 {
				return &exitError{2, errors.New("give at most one of --branch, --tag, --semver, --commit")}
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg.Logger = log
			if kubeconfig != "" && !cmd.Flags().Changed("kubernetes") {
				kubeMode = true
			}
			if kubeMode {
				if cfg.Kubernetes, err = kubeRESTConfig(kubeconfig); err != nil {
					return &exitError{2, err}
				}
				// client-go logs through klog; send it to our logger.
				klog.SetSlogLogger(log.With("component", "client-go"))
			}
			cfg.Cluster = cl.config(cfg.Kubernetes)
			if cfg.Injector, err = inj.config(cfg.Kubernetes); err != nil {
				return &exitError{2, err}
			}
			ctx := cmd.Context()
			if pprofAddr != "" {
				if err := pprofhttp.Serve(ctx, pprofAddr, log); err != nil {
					return &exitError{2, err}
				}
			}
			c, err := controller.Start(ctx, cfg)
			if err != nil {
				return &exitError{2, err}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "gitmesh controller: xDS on %s (auth %s), admin API on http://%s\n", c.XDSAddr, c.XDSAuth, c.AdminAddr)
			if err := c.Wait(); err != nil {
				return &exitError{2, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.RepoURL, "repo", "", "policy repository: https://, ssh://, git://, file:// URL or a local path")
	f.StringVar(&cfg.Ref.Branch, "branch", "", "branch to follow (default main)")
	f.StringVar(&cfg.Ref.Tag, "tag", "", "tag to deploy")
	f.StringVar(&cfg.Ref.SemVer, "semver", "", "semver range: deploy the newest matching tag (e.g. '>=1.0.0 <2.0.0')")
	f.StringVar(&cfg.Ref.Commit, "commit", "", "exact commit SHA to deploy")
	f.StringVar(&cfg.Path, "path", "", "policy directory inside the repository (a kustomization or plain YAML)")
	f.DurationVar(&cfg.Interval, "interval", 30*time.Second, "how often to poll the repository")
	f.DurationVar(&cfg.FetchTimeout, "timeout", 60*time.Second, "deadline of one fetch of the repository, with its build; a Git server that hangs fails the fetch (FetchFailed) after it")
	f.StringVar(&cfg.XDSAddr, "xds-addr", defaultXDSAddr, "listen address of the ADS (xDS) gRPC server")
	f.StringVar(&cfg.AdminAddr, "admin-addr", defaultAdminAddr, "listen address of the admin API (/api/v1, /metrics, /healthz)")
	f.StringVar(&cfg.StateDir, "state-dir", "gitmesh-state", "directory for the state database, the checkout and the admin token")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "file holding the admin API bearer token (default <state-dir>/admin-token, generated)")
	f.StringVar(&cfg.XDSAuth, "xds-auth", "", "xDS authentication: required (proxies join with a token, then use mTLS with a certificate bound to their node) or none (default: none when --xds-addr is loopback-only, required otherwise)")
	f.StringSliceVar(&cfg.XDSSANs, "xds-san", nil, "extra DNS names or IPs of the xDS server's certificate (e.g. the Kubernetes Service's names), besides the listen host and localhost")
	f.StringVar(&cfg.JoinTokenFile, "join-token-file", "", "file holding the token proxies join with (default <state-dir>/join-token, generated with mode 0600)")
	f.StringVar(&cfg.AdminAuth, "admin-auth", controller.AdminAuthWrites, "which admin API calls need the bearer token: writes, or all (reads too; /healthz and /readyz stay open)")
	f.StringVar(&cfg.WebhookSecretFile, "webhook-secret-file", "", "file holding the shared secret of the webhook receivers /hooks/github, /hooks/gitlab and /hooks/generic on the admin address (unset: not served)")
	f.StringVar(&cfg.Namespace, "namespace", "default", "namespace of policy objects that name none")
	f.StringVar(&cfg.MeshConfigFile, "mesh-config", "", "Istio MeshConfig YAML file: the extensionProviders (opentelemetry, envoyFileAccessLog) and defaultProviders that Telemetry objects use")
	f.StringVar(&cfg.SecretDir, "secret-dir", "", "directory of Git credential files, as a Flux secret: username/password, bearerToken, identity (+ password as passphrase) with known_hosts, caFile or ca.crt")
	f.StringVar(&cfg.SSHKnownHostsFile, "ssh-known-hosts", "", "known_hosts file trusted for ssh repositories (with known_hosts from --secret-dir)")
	f.StringVar(&cfg.VerifyPGPKeysFile, "verify-pgp-keys", "", "armored OpenPGP keyring (gpg --export --armor); only a head commit signed by one of its keys is built (Ready reason VerificationFailed otherwise)")
	f.StringVar(&cfg.VerifySSHKeysFile, "verify-ssh-keys", "", "ssh public keys one a line (authorized_keys or git allowed_signers form); only a head commit signed by one of them is built")
	f.BoolVar(&kubeMode, "kubernetes", kubernetesDefault(), "Kubernetes mode: read Services, EndpointSlices and Pods from the API server (default true inside a pod, where KUBERNETES_SERVICE_HOST is set; --kubernetes=false opts out)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file for Kubernetes mode outside a cluster (implies --kubernetes; default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&pprofAddr, "pprof-addr", "", "listen address of Go's profiling endpoints /debug/pprof/ (unset: not served; loopback only, for benchmarks)")
	cfg.MaxRepoSize, cfg.MaxFileSize = git.DefaultMaxRepoSize, sources.DefaultMaxFileBytes
	f.Var((*byteSize)(&cfg.MaxRepoSize), "max-repo-size", "largest revision (sum of its files) fetched; larger ones are refused before checkout")
	f.Var((*byteSize)(&cfg.MaxFileSize), "max-file-size", "largest file read by the build; larger ones are refused before they are read")
	addCAFlags(f, &cfg.CA)
	*inj = *addInjectorFlags(f)
	*cl = *addClusterFlags(f)
	return cmd
}

// byteSize is a size flag written in bytes or with a KiB, MiB or GiB suffix.
type byteSize int64

var _ pflag.Value = (*byteSize)(nil)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"B", 1}}

// String writes the size with the largest unit that divides it.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set parses "268435456", "256MiB", "256Mi", "4KiB"...
func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("size %q is not a positive number of bytes, KiB, MiB or GiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// Type names the flag's type in help.
func (b *byteSize) Type() string { return "size" }

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

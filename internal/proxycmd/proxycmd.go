// Package proxycmd is the command that runs gitmesh's bundled proxy: its
// flags, their checks and the run loop (join, then ADS). Both `gitmesh
// proxy` and the slim sidecar binary `gitmesh-proxy` are this command, so
// they take the same flags and behave the same; this package must not
// import the controller side (Kubernetes client, kustomize, Git), which
// would bring its size and memory back into the sidecar.
package proxycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/logging"
	"github.com/gitmesh/gitmesh/internal/pprofhttp"
	"github.com/gitmesh/gitmesh/proxy"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

// DefaultXDSAddr is the controller's xDS address when --xds is not given.
const DefaultXDSAddr = "127.0.0.1:15010"

// Options shape the command for the binary that embeds it.
type Options struct {
	// Use is the command's name as typed: "proxy" under gitmesh,
	// "gitmesh-proxy" as a binary of its own.
	Use string
	// Logger builds the process logger (from the binary's global flags).
	// When nil, the command adds --log-level and --log-format itself.
	Logger func(w io.Writer) (*slog.Logger, error)
	// DefaultXDSAddr is --xds's default; DefaultXDSAddr when empty.
	DefaultXDSAddr string
}

// ExitError carries the command's exit code: 2 means it could not start
// (bad flags, a refused join) or stopped on an error.
type ExitError struct {
	// Code is the process exit code.
	Code int
	// Err is what went wrong.
	Err error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *ExitError) Unwrap() error { return e.Err }

// New returns the proxy command.
func New(o Options) *cobra.Command {
	if o.DefaultXDSAddr == "" {
		o.DefaultXDSAddr = DefaultXDSAddr
	}
	logger := o.Logger
	var logLevel, logFormat string
	if logger == nil {
		logger = func(w io.Writer) (*slog.Logger, error) { return logging.New(w, logLevel, logFormat) }
	}
	var (
		xdsAddr    string
		labels     string
		instanceIP string
		w          nodemeta.Workload
		tokenFile  string
		caFile     string
		pprofAddr  string
	)
	cmd := &cobra.Command{
		Use:   o.Use + " --xds HOST:PORT --id NODE [--role sidecar|gateway] [--service NAME] ...",
		Short: "Run the bundled proxy",
		Long: `Run gitmesh's bundled L7 proxy. It announces its workload (service, namespace,
labels, listener addresses) to the controller, applies each config update all
at once or not at all (NACKing what it cannot apply), and keeps serving the
last good config while the controller is away.

A sidecar has an outbound listener (--outbound) that routes by the request's
authority, and an inbound listener (--inbound) that forwards to its app (--app):

  curl -x http://127.0.0.1:15001 http://reviews:9080/
  curl -H 'Host: reviews' http://127.0.0.1:15001/

When the controller locks its control plane (--xds-auth required, the
default off loopback), the proxy joins with a token (--join-token-file: the
controller's <state-dir>/join-token, or a projected ServiceAccount token in
Kubernetes) and verifies the controller with --xds-ca-file; it then talks
ADS over mTLS with a certificate bound to its node id, namespace, service
account and labels, renewed at half its life (docs/security.md).

Exit codes: 0 stopped cleanly, 2 could not start (a refused join too).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if xdsAddr == "" || w.ID == "" {
				return &ExitError{2, errors.New("--xds and --id are required")}
			}
			lbls, err := nodemeta.ParseLabels(labels)
			if err != nil {
				return &ExitError{2, err}
			}
			w.Labels = lbls
			if instanceIP != "" {
				w.InstanceIPs = strings.Split(instanceIP, ",")
			}
			if w.Service == "" && w.Role == nodemeta.RoleGateway {
				w.Service = "gateway"
			}
			if (w.Inbound == "") != (w.App == "") {
				return &ExitError{2, errors.New("--inbound and --app go together")}
			}
			if _, err := nodemeta.FromNode(w.Node()); err != nil {
				return &ExitError{2, err}
			}
			log, err := logger(os.Stderr)
			if err != nil {
				return &ExitError{2, err}
			}
			cfg := proxy.Config{XDSAddr: xdsAddr, Workload: w, Logger: log}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if pprofAddr != "" {
				if err := pprofhttp.Serve(ctx, pprofAddr, log); err != nil {
					return &ExitError{2, err}
				}
			}
			caPEM := []byte(os.Getenv("GITMESH_XDS_CA"))
			if tokenFile != "" && caFile == "" && len(caPEM) == 0 {
				return &ExitError{2, errors.New("--join-token-file needs --xds-ca-file (or the bundle in $GITMESH_XDS_CA)")}
			}
			if tokenFile == "" && caFile != "" {
				return &ExitError{2, errors.New("--xds-ca-file needs --join-token-file")}
			}
			var renewed chan error
			if tokenFile != "" {
				j, err := xdsauth.NewJoiner(xdsauth.JoinConfig{
					XDSAddr: xdsAddr, CAFile: caFile, CAPEM: caPEM, TokenFile: tokenFile, Logger: log,
					Declared: xdsauth.Binding{NodeID: w.ID, ID: ca.Identity{Namespace: w.Namespace, ServiceAccount: w.ServiceAccount},
						Pod: w.Pod, Labels: w.Labels},
				})
				if err != nil {
					return &ExitError{2, err}
				}
				if err := j.Join(ctx); err != nil {
					return &ExitError{2, err}
				}
				cfg.XDSCredentials = j.Credentials()
				renewed = make(chan error, 1)
				go func() { renewed <- j.Run(ctx) }()
			}
			p, err := proxy.New(cfg)
			if err != nil {
				return &ExitError{2, err}
			}
			err = p.Run(ctx)
			cancel()
			if renewed != nil {
				<-renewed
			}
			if err != nil {
				return &ExitError{2, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsAddr, "xds", o.DefaultXDSAddr, "controller's xDS address")
	f.StringVar(&w.ID, "id", "", "node id, unique in the fleet")
	f.StringVar(&w.Role, "role", nodemeta.RoleSidecar, "sidecar or gateway")
	f.StringVar(&w.Service, "service", "", "the workload's service name")
	f.StringVar(&w.Namespace, "namespace", envOr("POD_NAMESPACE", nodemeta.DefaultNamespace), "the workload's namespace (default $POD_NAMESPACE, else default)")
	f.StringVar(&labels, "labels", "", "the workload's labels, k=v,k=v (e.g. app=reviews,version=v2)")
	f.StringVar(&w.Outbound, "outbound", "", "outbound listener address (sidecar), e.g. 127.0.0.1:15001")
	f.StringVar(&w.Inbound, "inbound", "", "inbound listener address (sidecar): this workload's endpoint")
	f.StringVar(&w.App, "app", "", "local application address the inbound listener forwards to")
	f.StringVar(&w.Admin, "admin", "", "admin address (/ready, /metrics, /config_dump)")
	f.StringSliceVar(&w.Gateway, "gateway", nil, "addresses a gateway binds, one per Gateway server port it serves, e.g. 0.0.0.0:80,0.0.0.0:443")
	// In a pod, the downward API sets these as for Istio's sidecar; the
	// Kubernetes mode checks them against the Pod before serving the proxy.
	f.StringVar(&w.Pod, "pod-name", os.Getenv("POD_NAME"), "the pod's name (default $POD_NAME)")
	f.StringVar(&w.ServiceAccount, "service-account", os.Getenv("SERVICE_ACCOUNT"), "the pod's service account (default $SERVICE_ACCOUNT)")
	f.StringVar(&instanceIP, "instance-ip", os.Getenv("INSTANCE_IP"), "the pod's IP addresses, comma-separated (default $INSTANCE_IP)")
	f.StringVar(&tokenFile, "join-token-file", "", "token to join a locked control plane with: the controller's join token, or a projected ServiceAccount token (audience gitmesh) in Kubernetes; needs --xds-ca-file")
	f.StringVar(&caFile, "xds-ca-file", "", "PEM bundle of the mesh CA that verifies the controller's xDS certificate, re-read at each connection (the controller's <state-dir>/ca/root-cert.pem; default: the bundle in $GITMESH_XDS_CA, as the injector sets it)")
	f.StringVar(&pprofAddr, "pprof-addr", "", "listen address of Go's profiling endpoints /debug/pprof/ (unset: not served; loopback only, for benchmarks)")
	f.StringVar(&w.Interception, "interception-mode", "", "REDIRECT when gitmesh proxy-init captures the workload's traffic (docs/capture.md)")
	if o.Logger == nil {
		f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
		f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	}
	return cmd
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

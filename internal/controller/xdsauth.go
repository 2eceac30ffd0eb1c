package controller

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/kubernetes"

	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/xds"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

// Admin API auth modes (--admin-auth).
const (
	// AdminAuthWrites requires the bearer token for mutating calls only.
	AdminAuthWrites = "writes"
	// AdminAuthAll requires it for every call but /healthz, /readyz and
	// the webhook receivers (which check their own signatures).
	AdminAuthAll = "all"
)

// xdsServerServiceAccount is the service account in the SPIFFE id of the
// xDS server's certificate.
const xdsServerServiceAccount = "gitmesh"

// lockedXDS is what a controller with --xds-auth required adds to its xDS
// server.
type lockedXDS struct {
	authority *ca.Authority
	joinToken string
	opts      []xds.Option
}

// loadAuthority opens the mesh CA kept in <state-dir>/ca, generating it on
// first start.
//
// MERGE NOTE: a stand-in until the CA wiring (--trust-domain,
// --ca-cert/--ca-key, the cluster's Secret) lands; the lead replaces this
// function's body with that wiring's *ca.Authority.
func loadAuthority(cfg Config, log *slog.Logger) (*ca.Authority, error) {
	m, generated, err := ca.LoadDir(filepath.Join(cfg.StateDir, "ca"), ca.DefaultTrustDomain, time.Now())
	if err != nil {
		return nil, fmt.Errorf("loading the mesh CA: %w", err)
	}
	a, err := ca.New(ca.DefaultTrustDomain, m)
	if err != nil {
		return nil, fmt.Errorf("loading the mesh CA: %w", err)
	}
	if generated {
		log.Info("generated the mesh CA root", "dir", filepath.Join(cfg.StateDir, "ca"))
	}
	return a, nil
}

// lockXDS prepares the locked control plane: the CA, the join token, the
// xDS server's TLS, the certificate service and the admission binding
// nodes to their certificates (composed with the pod check in Kubernetes
// mode).
func lockXDS(cfg Config, st *state, log *slog.Logger) (*lockedXDS, error) {
	authority, err := loadAuthority(cfg, log)
	if err != nil {
		return nil, err
	}
	tokenFile := cfg.JoinTokenFile
	if tokenFile == "" {
		tokenFile = filepath.Join(cfg.StateDir, "join-token")
	}
	token, err := xdsauth.LoadOrCreateJoinToken(tokenFile)
	if err != nil {
		return nil, err
	}
	jt, err := xdsauth.NewJoinToken(token)
	if err != nil {
		return nil, err
	}
	auth := []xdsauth.Authenticator{jt}
	if cfg.Kubernetes != nil {
		cs, err := kubernetes.NewForConfig(cfg.Kubernetes)
		if err != nil {
			return nil, fmt.Errorf("creating the TokenReview client: %w", err)
		}
		auth = append(auth, xdsauth.NewTokenReview(cs))
	}
	hosts, err := xdsauth.ServerHosts(cfg.XDSAddr, cfg.XDSSANs)
	if err != nil {
		return nil, err
	}
	ns := cfg.Namespace
	if cfg.Cluster != nil && cfg.Cluster.Namespace != "" {
		ns = cfg.Cluster.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	serverTLS := xdsauth.NewServerTLS(authority, ca.Identity{Namespace: ns, ServiceAccount: xdsServerServiceAccount}, hosts)
	var next xds.AdmitFunc
	if st.cluster != nil && st.cluster.checker != nil {
		next = st.cluster.checker.Check
	}
	certs := xdsauth.NewCertService(authority, 0, log.With("component", "xds-ca"), auth...)
	return &lockedXDS{authority: authority, joinToken: token, opts: []xds.Option{
		xds.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(serverTLS.Config()))),
		xds.WithClientCertificates(),
		xds.WithServices(certs.Register),
		xds.WithAdmission(xdsauth.NewAdmitter(authority, next, log.With("component", "xds-auth")).Admit),
	}}, nil
}

// requireAdminToken requires the bearer token on every admin call but the
// probes and the webhook receivers (--admin-auth all).
func requireAdminToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" || req.URL.Path == "/readyz" || strings.HasPrefix(req.URL.Path, "/hooks/") {
			next.ServeHTTP(w, req)
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error": "missing or wrong bearer token (the admin API runs with --admin-auth all)"}`)
			return
		}
		next.ServeHTTP(w, req)
	})
}

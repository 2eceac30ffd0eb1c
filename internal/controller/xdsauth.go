package controller

import (
	"cmp"
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/podidentity"
	"github.com/gitmesh/gitmesh/internal/web"
	"github.com/gitmesh/gitmesh/xds"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
	"github.com/gitmesh/gitmesh/xds/xdsauth/tokenreview"
)

// Admin API auth modes (--admin-auth).
const (
	// AdminAuthWrites requires the bearer token for mutating calls only.
	AdminAuthWrites = "writes"
	// AdminAuthAll requires it for every call but /healthz, /readyz, the
	// webhook receivers (which check their own signatures) and the web
	// view's page and assets (which hold no data; the page asks for the
	// token).
	AdminAuthAll = "all"
)

// xdsServerServiceAccount is the service account in the SPIFFE id of the
// xDS server's certificate.
const xdsServerServiceAccount = "gitmesh"

// lockedXDS is what a controller with --xds-auth required adds to its xDS
// server.
type lockedXDS struct {
	joinToken string
	opts      []xds.Option
}

// lockXDS prepares the locked control plane: the CA, the join token, the
// xDS server's TLS, the certificate service and the admission binding
// nodes to their certificates (composed with the pod check in Kubernetes
// mode).
func lockXDS(cfg Config, st *state, authority xdsauth.Authorities, log *slog.Logger) (*lockedXDS, error) {
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
	var podCheck xds.AdmitFunc // for nodes that joined with a ServiceAccount token
	if cfg.Kubernetes != nil {
		cs, err := kubernetes.NewForConfig(cfg.Kubernetes)
		if err != nil {
			return nil, fmt.Errorf("creating the TokenReview client: %w", err)
		}
		auth = append(auth, tokenreview.New(cs))
		podCheck = podidentity.New(podidentity.Client{Interface: cs}).Check
	}
	if st.cluster != nil && st.cluster.checker != nil {
		podCheck = st.cluster.checker.Check
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
	certs := xdsauth.NewCertService(authority, 0, log.With("component", "xds-ca"), auth...)
	return &lockedXDS{joinToken: token, opts: []xds.Option{
		xds.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(serverTLS.Config()))),
		xds.WithClientCertificates(),
		xds.WithServices(certs.Register),
		xds.WithAdmission(xdsauth.NewAdmitter(authority, podCheck, log.With("component", "xds-auth")).Admit),
	}}, nil
}

// CABundleKey is the key of the CA bundle in the ConfigMap a controller in
// Kubernetes mode publishes (<MeshRollout name>-xds-ca in its namespace),
// which the chart's gateway mounts to verify the controller.
const CABundleKey = "ca.pem"

// publishCABundle writes the CA bundle into the ConfigMap
// <cfg.Name>-xds-ca of the cluster namespace, creating it, so that proxies
// the chart runs (the gateway) can verify the controller; the kubelet
// updates a mounted ConfigMap, and the proxy re-reads it at each
// connection. A failure is logged: injected sidecars get the bundle from
// the injector.
func publishCABundle(ctx context.Context, cfg ClusterConfig, bundle []byte, log *slog.Logger) {
	cs, err := kubernetes.NewForConfig(cfg.REST)
	if err == nil {
		err = writeConfigMap(ctx, cs, cfg.Namespace, cmp.Or(cfg.Name, "gitmesh")+"-xds-ca", map[string]string{CABundleKey: string(bundle)})
	}
	if err != nil {
		log.Warn("publishing the xDS CA bundle for the gateway", "error", err)
	}
}

// writeConfigMap creates or updates ConfigMap namespace/name with data.
func writeConfigMap(ctx context.Context, cs kubernetes.Interface, namespace, name string, data map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cms := cs.CoreV1().ConfigMaps(namespace)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Data: data}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if maps.Equal(cm.Data, data) {
		return nil
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// requireAdminToken requires the bearer token on every admin call but the
// probes, the webhook receivers and the web view's static files
// (--admin-auth all).
func requireAdminToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" || req.URL.Path == "/readyz" || strings.HasPrefix(req.URL.Path, "/hooks/") || web.IsPublic(req.URL.Path) {
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

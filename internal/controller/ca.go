package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/reconciler"
	"github.com/gitmesh/gitmesh/reconciler/kubestate"
	"github.com/gitmesh/gitmesh/sds"
)

// CAConfig configures the mesh certificate authority. The zero value runs
// a CA with a root generated on first start and kept under StateDir/ca
// (in the Kubernetes cluster mode, in the Secret "<name>-ca" of the
// controller's namespace).
type CAConfig struct {
	// TrustDomain is the trust domain of the SPIFFE ids issued. Default
	// cluster.local.
	TrustDomain string
	// CertFile and KeyFile are an operator-supplied root (PEM), used
	// instead of a generated one; the controller then neither rotates
	// nor prunes it.
	CertFile, KeyFile string
	// TrustedRootsFile holds extra roots (PEM) trusted beside CertFile:
	// the previous root while an operator-supplied root is replaced.
	TrustedRootsFile string
	// CertTTL is the lifetime of workload certificates. Default 24h.
	CertTTL time.Duration
	// RotationAckTimeout bounds each phase of a root rotation's wait for
	// the proxies' ACKs. Default sds.DefaultAckTimeout.
	RotationAckTimeout time.Duration
}

// caDir is where a generated root is kept outside the cluster mode.
func (cfg Config) caDir() string { return filepath.Join(cfg.StateDir, "ca") }

// caSecretName names the cluster mode's CA Secret.
func caSecretName(cl *cluster) string { return cl.cfg.Name + "-ca" }

// openCA loads (or generates and persists) the root and returns the
// Authority with the store a rotation persists to (nil for an
// operator-supplied root).
func openCA(ctx context.Context, cfg Config, st *state, log *slog.Logger) (*ca.Authority, sds.RootStore, error) {
	c := cfg.CA
	td := c.TrustDomain
	if td == "" {
		td = ca.DefaultTrustDomain
	}
	var (
		m       ca.Material
		store   sds.RootStore
		err     error
		created bool
		where   string
	)
	switch {
	case c.CertFile != "" || c.KeyFile != "":
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, nil, errors.New("opening CA: --ca-cert and --ca-key go together")
		}
		if m, err = ca.ReadFiles(c.CertFile, c.KeyFile, ""); err != nil {
			return nil, nil, fmt.Errorf("opening CA: %w", err)
		}
		where = c.CertFile
	case c.TrustedRootsFile != "":
		return nil, nil, errors.New("opening CA: --ca-trusted-roots needs --ca-cert and --ca-key (a generated root is rotated with 'gitmesh ca rotate')")
	case st.cluster != nil:
		sec := kubestate.NewCASecret(st.cluster.client, st.cluster.cfg.Namespace, caSecretName(st.cluster))
		m, created, err = sec.LoadOrCreate(ctx, func() (ca.Material, error) { return ca.NewRoot(td, 0, time.Now()) })
		if err != nil {
			return nil, nil, fmt.Errorf("opening CA: %w", err)
		}
		store, where = sec, "secret "+st.cluster.cfg.Namespace+"/"+caSecretName(st.cluster)
	default:
		if m, created, err = ca.LoadDir(cfg.caDir(), td, time.Now()); err != nil {
			return nil, nil, fmt.Errorf("opening CA: %w", err)
		}
		store, where = sds.DirStore(cfg.caDir()), cfg.caDir()
	}
	if c.TrustedRootsFile != "" {
		if m.TrustedPEM, err = os.ReadFile(c.TrustedRootsFile); err != nil {
			return nil, nil, fmt.Errorf("opening CA: reading trusted roots: %w", err)
		}
	}
	a, err := ca.New(td, m)
	if err != nil {
		return nil, nil, fmt.Errorf("opening CA from %s: %w", where, err)
	}
	log.Info("mesh CA ready", "trust_domain", td, "root_from", where, "generated", created,
		"root_not_after", a.Root().NotAfter, "operator_supplied", store == nil)
	return a, store, nil
}

// reloadCA re-reads the cluster mode's root when the replica starts to
// lead: the previous leader may have rotated it.
func reloadCA(cfg Config, cl *cluster, mgr *sds.Manager) func(context.Context) error {
	return func(ctx context.Context) error {
		if cfg.CA.CertFile != "" {
			return nil
		}
		sec := kubestate.NewCASecret(cl.client, cl.cfg.Namespace, caSecretName(cl))
		m, _, err := sec.LoadOrCreate(ctx, func() (ca.Material, error) {
			return ca.Material{}, errors.New("the CA secret disappeared")
		})
		if err != nil {
			return fmt.Errorf("re-reading the CA root: %w", err)
		}
		a, err := ca.New(mgr.Authority().TrustDomain(), m)
		if err != nil {
			return fmt.Errorf("re-reading the CA root: %w", err)
		}
		mgr.SetAuthority(a)
		return nil
	}
}

// withCA serves the CA's admin API on /api/v1/ca and the rest with next:
//
//	GET  /api/v1/ca  admin.CAStatus
//	POST /api/v1/ca  admin.CARequest {"op": "rotate|prune", "force": bool} (bearer token)
//
// A refused operation (operator-supplied root, nothing to prune, old root
// in use) answers 409.
func withCA(mgr *sds.Manager, token string, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/ca", func(w http.ResponseWriter, _ *http.Request) {
		admin.WriteJSON(w, http.StatusOK, mgr.Status())
	})
	mux.Handle("POST /api/v1/ca", reconciler.RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var op admin.CARequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<16)).Decode(&op); err != nil {
			admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "decoding request: " + err.Error()})
			return
		}
		var (
			res admin.CAResponse
			err error
		)
		switch op.Op {
		case admin.CAOpRotate:
			res, err = mgr.Rotate(req.Context())
		case admin.CAOpPrune:
			res, err = mgr.Prune(req.Context(), op.Force)
		default:
			admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("unknown op %q: want %s or %s", op.Op, admin.CAOpRotate, admin.CAOpPrune)})
			return
		}
		switch {
		case errors.Is(err, sds.ErrOperatorRoot), errors.Is(err, sds.ErrNothingToPrune), errors.Is(err, sds.ErrOldRootInUse):
			admin.WriteJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		case err != nil:
			admin.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			admin.WriteJSON(w, http.StatusOK, res)
		}
	})))
	mux.Handle("/", next)
	return mux
}

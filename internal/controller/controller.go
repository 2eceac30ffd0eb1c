// Package controller assembles a running gitmesh controller from its parts:
// a git Source, the Reconciler with its Store, the xds server and the admin
// HTTP server. It holds wiring only; `gitmesh controller`, `gitmesh up` and
// the end-to-end tests share it.
package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/jwks"
	"github.com/gitmesh/gitmesh/internal/web"
	"github.com/gitmesh/gitmesh/reconciler"
	"github.com/gitmesh/gitmesh/registry/kube"
	"github.com/gitmesh/gitmesh/sds"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/sources/git"
	"github.com/gitmesh/gitmesh/xds"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

// Config configures a controller.
type Config struct {
	// RepoURL is the policy repository (https, ssh, git, file URL or local path).
	RepoURL string
	// Ref selects the branch, tag, semver range or commit. Default: branch main.
	Ref git.Ref
	// Path is the policy directory inside the repository.
	Path string
	// Interval is the poll interval. Default 30s.
	Interval time.Duration
	// FetchTimeout bounds one Git fetch with the build of what it fetched
	// (--timeout, as Flux's spec.timeout). Default 60s.
	FetchTimeout time.Duration
	// XDSAddr and AdminAddr are listen addresses; port 0 picks a free one.
	XDSAddr, AdminAddr string
	// StateDir holds the state database, the checkout and the admin token
	// (and, with XDSAuth required, the join token and the mesh CA in ca/).
	StateDir string
	// XDSAuth is "required" (proxies join with a token, then talk ADS
	// over mTLS with a certificate bound to their node) or "none" (plain
	// gRPC, any client). Default: none when XDSAddr is loopback-only,
	// required otherwise (docs/security.md).
	XDSAuth string
	// XDSSANs are extra names of the xDS server's certificate (e.g. the
	// Kubernetes Service's DNS names), besides the listen host and
	// localhost.
	XDSSANs []string
	// JoinTokenFile holds the token proxies join with. Default
	// <StateDir>/join-token, generated when missing.
	JoinTokenFile string
	// AdminAuth is AdminAuthWrites (default: the bearer token guards
	// mutating calls) or AdminAuthAll (reads too, but the probes).
	AdminAuth string
	// AdminTokenFile holds the admin API's bearer token. Default <StateDir>/admin-token, generated when missing.
	AdminTokenFile string
	// WebhookSecretFile holds the shared secret of the webhook receivers
	// (/hooks/github, /hooks/gitlab, /hooks/generic on the admin server).
	// Empty: the receivers are not served.
	WebhookSecretFile string
	// Namespace is the namespace of objects that name none. Default "default".
	Namespace string
	// MeshConfigFile is an Istio MeshConfig in YAML (istiod's `mesh`
	// ConfigMap key): the extensionProviders and defaultProviders the
	// Telemetry kind uses (docs/observability.md). Empty: none.
	MeshConfigFile string
	// Logger receives structured logs. If nil, logs are discarded.
	Logger *slog.Logger

	// SecretDir holds Git credentials as files, laid out as a Flux
	// GitRepository secret (see git.LoadSecretDir). Empty: none.
	SecretDir string
	// SSHKnownHostsFile is a known_hosts file trusted for ssh URLs, in
	// addition to known_hosts in SecretDir.
	SSHKnownHostsFile string
	// MaxRepoSize bounds the files of one revision, in bytes; a larger one
	// is refused before checkout (sources.ErrRepoTooLarge). Default
	// git.DefaultMaxRepoSize.
	MaxRepoSize int64
	// VerifyPGPKeysFile is an armored OpenPGP keyring and
	// VerifySSHKeysFile an authorized_keys-style list of ssh public keys;
	// when either is set, only a head commit signed by one of these keys
	// is built (git.WithVerify, Flux's spec.verify mode HEAD).
	VerifyPGPKeysFile, VerifySSHKeysFile string
	// MaxFileSize bounds one file the build reads, in bytes; a larger one
	// is refused before it is read (sources.ErrFileTooLarge). Default
	// sources.DefaultMaxFileBytes.
	MaxFileSize int64

	// CA configures the mesh certificate authority (ca.go).
	CA CAConfig

	// Injector, when set, serves the sidecar injector webhook (injector.go).
	Injector *InjectorConfig

	// Cluster, when set, keeps the state in a MeshRollout instead of
	// StateDir's database and runs this controller as one replica of
	// several, leading on a Lease (see ClusterConfig). StateDir still
	// holds the checkout and the admin token.
	Cluster *ClusterConfig

	// Kubernetes, when set, turns on Kubernetes mode: Services,
	// EndpointSlices and Pods come from this API server (registry/kube)
	// instead of from the Kubernetes objects in Git. nil: off.
	Kubernetes *rest.Config
	// KubernetesResync is the informers' resync period (0: none).
	KubernetesResync time.Duration
}

// gitAuth loads the credentials cfg names.
func (cfg Config) gitAuth() (git.Auth, error) {
	var auth git.Auth
	if cfg.SecretDir != "" {
		var err error
		if auth, err = git.LoadSecretDir(cfg.SecretDir); err != nil {
			return git.Auth{}, err
		}
	}
	if cfg.SSHKnownHostsFile != "" {
		kh, err := git.LoadKnownHosts(cfg.SSHKnownHostsFile)
		if err != nil {
			return git.Auth{}, err
		}
		if len(auth.KnownHosts) > 0 {
			kh = append(append(auth.KnownHosts, '\n'), kh...)
		}
		auth.KnownHosts = kh
	}
	return auth, nil
}

// Controller is a started controller.
type Controller struct {
	// XDSAddr and AdminAddr are the bound addresses.
	XDSAddr, AdminAddr string
	// InjectorAddr is the sidecar injector's bound address ("" when off).
	InjectorAddr string
	// Token is the admin API's bearer token.
	Token string
	// XDSAuth is the xDS auth mode in force ("required" or "none").
	XDSAuth string
	// JoinToken is the token proxies join with ("" with XDSAuth none).
	JoinToken string
	// CABundle is the PEM bundle that verifies the xDS server (nil with
	// XDSAuth none).
	CABundle []byte
	// Reconciler is the running loop.
	Reconciler *reconciler.Reconciler
	// Registry is the API server feed in Kubernetes mode; nil otherwise.
	Registry *kube.Registry
	// CA is the certificate manager: workload certificates over SDS and
	// the root's rotation.
	CA *sds.Manager

	closeDB   func() error
	cluster   *cluster // nil outside the Kubernetes mode
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	mu        sync.Mutex // protects errs
	errs      []error
}

// Start binds the listeners and starts the controller's goroutines; they
// stop when ctx is done. Call Wait to wait for them.
func Start(ctx context.Context, cfg Config) (*Controller, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("starting controller: --state-dir is required")
	}
	if cfg.AdminTokenFile == "" {
		cfg.AdminTokenFile = filepath.Join(cfg.StateDir, "admin-token")
	}
	ctx, cancel := context.WithCancel(ctx)
	// undo holds what a failed start releases, in reverse order.
	undo := []func() error{func() error { cancel(); return nil }}
	started := false
	defer func() {
		if !started {
			for i := len(undo) - 1; i >= 0; i-- {
				_ = undo[i]()
			}
		}
	}()
	st, err := openState(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	undo = append(undo, st.closeDB)
	token, err := reconciler.LoadOrCreateToken(cfg.AdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	if cfg.MaxRepoSize == 0 {
		cfg.MaxRepoSize = git.DefaultMaxRepoSize
	}
	if cfg.MaxFileSize == 0 {
		cfg.MaxFileSize = sources.DefaultMaxFileBytes
	}
	auth, err := cfg.gitAuth()
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	gitOpts := []git.Option{git.WithWorkDir(filepath.Join(cfg.StateDir, "checkout")),
		git.WithLogger(log.With("component", "source")), git.WithAuth(auth), git.WithMaxRepoSize(cfg.MaxRepoSize)}
	if cfg.VerifyPGPKeysFile != "" || cfg.VerifySSHKeysFile != "" {
		keys, err := git.LoadVerifyKeys(cfg.VerifyPGPKeysFile, cfg.VerifySSHKeysFile)
		if err != nil {
			return nil, fmt.Errorf("starting controller: %w", err)
		}
		gitOpts = append(gitOpts, git.WithVerify(keys))
	}
	src, err := git.New(cfg.RepoURL, cfg.Ref, gitOpts...)
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	xdsMode, err := xdsauth.ResolveMode(cfg.XDSAuth, cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	switch cfg.AdminAuth {
	case "", AdminAuthWrites, AdminAuthAll:
	default:
		return nil, fmt.Errorf("starting controller: --admin-auth: want writes or all, got %s", cfg.AdminAuth)
	}
	authority, caStore, err := openCA(ctx, cfg, st, log.With("component", "ca"))
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	// certs is the certificate manager; the locked xDS server asks it for
	// the CA in force, which a root rotation replaces.
	var certs *sds.Manager
	xdsOpts := append([]xds.Option{xds.WithLogger(log.With("component", "xds"))}, st.xdsOptions()...)
	var locked *lockedXDS
	if xdsMode == xdsauth.AuthRequired {
		authorities := xdsauth.AuthorityFunc(func() *ca.Authority { return certs.Authority() })
		if locked, err = lockXDS(cfg, st, authorities, log); err != nil {
			return nil, fmt.Errorf("starting controller: %w", err)
		}
		xdsOpts = append(xdsOpts, locked.opts...)
	}
	xdsServer := xds.NewServer(xdsOpts...)
	caOpts := []sds.Option{sds.WithLogger(log.With("component", "ca")), sds.WithCertTTL(cfg.CA.CertTTL), sds.WithAckTimeout(cfg.CA.RotationAckTimeout)}
	if caStore != nil {
		caOpts = append(caOpts, sds.WithRootStore(caStore))
	}
	certs = sds.New(xdsServer, authority, caOpts...)
	if st.cluster != nil {
		st.cluster.onLead = reloadCA(cfg, st.cluster, certs)
	}
	var kreg *kube.Registry
	var liveRegistry reconciler.Registry // stays a nil interface outside Kubernetes mode (a nil *kube.Registry would not)
	if cfg.Kubernetes != nil {
		client, err := kubernetes.NewForConfig(cfg.Kubernetes)
		if err != nil {
			return nil, fmt.Errorf("starting controller: creating the Kubernetes client: %w", err)
		}
		kreg = kube.New(client, kube.WithLogger(log.With("component", "kubernetes")), kube.WithResync(cfg.KubernetesResync))
		liveRegistry = kreg
	}
	var meshConfig *meshv1alpha1.MeshConfig
	if cfg.MeshConfigFile != "" {
		data, err := os.ReadFile(cfg.MeshConfigFile)
		if err != nil {
			return nil, fmt.Errorf("starting controller: %w", err)
		}
		if meshConfig, err = compiler.ReadMeshConfig(data); err != nil {
			return nil, fmt.Errorf("starting controller: %s: %w", cfg.MeshConfigFile, err)
		}
	}
	rec, err := reconciler.New(reconciler.Config{
		Source: src, Path: cfg.Path, Interval: cfg.Interval, FetchTimeout: cfg.FetchTimeout, Fleet: xdsServer, Store: st.store, Recorder: st.recorder(),
		Build: func(root, path string) ([]sources.Object, []sources.Problem, error) {
			return sources.Build(root, path, sources.WithMaxFileBytes(cfg.MaxFileSize))
		},
		DefaultNamespace: cfg.Namespace, TrustDomain: authority.TrustDomain(), MeshConfig: meshConfig, Logger: log.With("component", "reconciler"), Registry: liveRegistry,
		CA:   func() *admin.CAStatus { s := certs.Status(); return &s },
		JWKS: jwks.New(),
	})
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}
	receiver, err := cfg.webhooks(rec, log.With("component", "webhooks"))
	if err != nil {
		return nil, fmt.Errorf("starting controller: %w", err)
	}

	xdsLis, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("starting controller: listening for xDS on %s: %w", cfg.XDSAddr, err)
	}
	undo = append(undo, xdsLis.Close)
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("starting controller: listening for admin API on %s: %w", cfg.AdminAddr, err)
	}
	undo = append(undo, adminLis.Close)
	var inj *injector
	if cfg.Injector != nil {
		injCfg := *cfg.Injector
		if locked != nil { // injected sidecars join with their ServiceAccount token
			injCfg.Template.XDSCABundle = string(certs.Authority().Bundle())
		}
		if inj, err = newInjector(injCfg, log.With("component", "injector")); err != nil {
			return nil, fmt.Errorf("starting controller: %w", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(rec.Collectors()...)
	reg.MustRegister(xdsServer.Collectors()...)
	reg.MustRegister(certs.Collectors()...)
	if kreg != nil {
		reg.MustRegister(kreg.Collectors()...)
	}
	webView := web.New(rec, xdsServer, web.WithLogger(log.With("component", "web")))
	adminHandler := st.adminHandler(withWeb(webView, withHooks(receiver, withCA(certs, token, reconciler.AdminHandler(rec, token, reg)))))
	if cfg.AdminAuth == AdminAuthAll {
		adminHandler = requireAdminToken(token, adminHandler)
	}
	admin := &http.Server{Handler: adminHandler, ReadHeaderTimeout: 10 * time.Second}

	c := &Controller{XDSAddr: xdsLis.Addr().String(), AdminAddr: adminLis.Addr().String(), Token: token, Reconciler: rec, Registry: kreg, CA: certs,
		XDSAuth: xdsMode, closeDB: st.closeDB, cluster: st.cluster, cancel: cancel}
	if locked != nil {
		c.JoinToken, c.CABundle = locked.joinToken, authority.Bundle()
		if cfg.Cluster != nil {
			publishCABundle(ctx, *cfg.Cluster, c.CABundle, log)
		}
	}
	c.goRun("xds server", func() error { return xdsServer.Serve(ctx, xdsLis) })
	c.goRun("certificate manager", func() error { return certs.Run(ctx) })
	c.goRun("web view", func() error { return webView.Run(ctx) })
	if kreg != nil {
		c.goRun("kubernetes registry", func() error { return kreg.Run(ctx) })
	}
	// synced waits until the informers have listed the cluster's services,
	// since every revision, the stored one too, is parsed against them;
	// false when ctx is done first.
	synced := func() bool {
		if kreg == nil {
			return true
		}
		log.Info("waiting for the Kubernetes informers to sync", "host", cfg.Kubernetes.Host)
		return kreg.WaitSynced(ctx) == nil
	}
	if st.cluster != nil {
		c.goRun("leader", func() error {
			defer cancel() // a replica that stops leading stops whole
			if !synced() {
				return nil
			}
			return st.cluster.run(ctx, rec)
		})
	} else {
		c.goRun("reconciler", func() error {
			if !synced() {
				return nil
			}
			return rec.Run(ctx)
		})
	}
	c.goRun("admin server", func() error {
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = admin.Shutdown(shutdown)
		}()
		if err := admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if inj != nil {
		c.InjectorAddr = inj.lis.Addr().String()
		c.runInjector(ctx, inj)
	}
	started = true
	log.Info("controller started", "repo", src.URL(), "git_credentials", auth.String(), "xds_addr", c.XDSAddr, "admin_addr", c.AdminAddr, "state_dir", cfg.StateDir, "kubernetes", kreg != nil,
		"xds_auth", xdsMode, "admin_auth", cmp.Or(cfg.AdminAuth, AdminAuthWrites))
	return c, nil
}

func (c *Controller) goRun(name string, f func() error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := f(); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("%s: %w", name, err))
			c.mu.Unlock()
		}
	}()
}

// Wait blocks until every goroutine has stopped (after ctx is done), closes
// the state store and returns the goroutines' errors.
func (c *Controller) Wait() error {
	c.wg.Wait()
	c.closeOnce.Do(func() {
		c.cancel()
		if err := c.closeDB(); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("closing state: %w", err))
			c.mu.Unlock()
		}
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.errs...)
}

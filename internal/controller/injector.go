package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/inject"
)

// InjectorConfig configures the sidecar injector webhook a controller
// serves (docs/kubernetes.md, "Sidecar injection").
type InjectorConfig struct {
	// Addr is the webhook's HTTPS listen address; it serves POST /inject.
	// Port 0 picks a free one.
	Addr string
	// Template is what the webhook adds to a pod.
	Template inject.Config
	// Certs locates the serving certificate's Secret and the webhook
	// configuration whose caBundle follows it. Its Logger defaults to the
	// controller's.
	Certs inject.CertConfig
	// Kube reaches the API server that holds the Secret and the webhook
	// configuration, with the controller's own identity. Required.
	Kube *rest.Config
}

// injector is a sidecar injector bound to its address, not yet serving.
type injector struct {
	lis   net.Listener
	srv   *http.Server
	certs *inject.Certs
}

// newInjector checks cfg and binds the webhook's listener.
func newInjector(cfg InjectorConfig, log *slog.Logger) (*injector, error) {
	if cfg.Kube == nil {
		return nil, errors.New("sidecar injector: no Kubernetes API server configured")
	}
	if err := cfg.Template.Validate(); err != nil {
		return nil, fmt.Errorf("sidecar injector: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg.Kube)
	if err != nil {
		return nil, fmt.Errorf("sidecar injector: %w", err)
	}
	if cfg.Certs.Logger == nil {
		cfg.Certs.Logger = log
	}
	certs := inject.NewCerts(client, cfg.Certs)
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sidecar injector: listening on %s: %w", cfg.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/inject", inject.Handler(cfg.Template, log))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return &injector{lis: lis, srv: srv, certs: certs}, nil
}

// run starts the certificate keeper and the HTTPS server; both stop when
// ctx is done.
func (c *Controller) runInjector(ctx context.Context, inj *injector) {
	c.goRun("injector certificate", func() error { inj.certs.Run(ctx); return nil })
	c.goRun("injector server", func() error {
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = inj.srv.Shutdown(shutdown)
		}()
		if err := inj.srv.ServeTLS(inj.lis, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

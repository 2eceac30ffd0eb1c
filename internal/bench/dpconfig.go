package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// meshConfig is where the data plane's sidecars get their configuration.
// compiledConfig serves the compiler's output from an xDS server inside
// the harness, with certificates from package ca; a source backed by the
// real controller (policy pushed to Git, SDS from its CA) can replace it
// without touching the cases.
type meshConfig interface {
	// XDSAddr is the ADS address the proxies dial.
	XDSAddr() string
	// Apply makes the configuration of policy for fleet available to each
	// of its workloads, with auto mTLS on or off.
	Apply(ctx context.Context, policy []sources.Object, fleet []nodemeta.Workload, mtls bool) error
}

// compiledConfig is an in-harness xDS server (gitmesh's xds.Server) fed
// with compiler.Parse + Policy.Compile per workload class, plus the SDS
// secrets default and ROOTCA from a mesh CA.
type compiledConfig struct {
	srv  *xds.Server
	addr string
	ca   *ca.Authority
	gen  int
	// mu protects pending: the secrets of nodes that have not connected
	// yet (xds.Server.SetSecrets takes only known nodes), delivered by
	// the goroutine of startCompiledConfig when they do.
	mu      sync.Mutex
	pending map[string][]*tlsv3.Secret
}

var _ meshConfig = (*compiledConfig)(nil)

// startCompiledConfig starts the xDS server on loopback until ctx is done.
func startCompiledConfig(ctx context.Context) (*compiledConfig, error) {
	m, err := ca.NewRoot(compiler.DefaultTrustDomain, 0, time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating the mesh CA: %w", err)
	}
	auth, err := ca.New(compiler.DefaultTrustDomain, m)
	if err != nil {
		return nil, fmt.Errorf("creating the mesh CA: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for xDS: %w", err)
	}
	c := &compiledConfig{srv: xds.NewServer(), addr: lis.Addr().String(), ca: auth, pending: map[string][]*tlsv3.Secret{}}
	changed := c.srv.Subscribe()
	go func() { _ = c.srv.Serve(ctx, lis) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				c.deliverSecrets(ctx)
			}
		}
	}()
	return c, nil
}

// deliverSecrets gives every connected node its pending secrets.
func (c *compiledConfig) deliverSecrets(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, secrets := range c.pending {
		if _, ok := c.srv.Node(id); !ok {
			continue
		}
		if _, err := c.srv.SetSecrets(ctx, id, secrets); err == nil {
			delete(c.pending, id)
		}
	}
}

func (c *compiledConfig) XDSAddr() string { return c.addr }

func (c *compiledConfig) Apply(ctx context.Context, policy []sources.Object, fleet []nodemeta.Workload, mtls bool) error {
	p, diags := compiler.Parse(policy, compiler.WithAutoMTLS(mtls))
	if diags.HasErrors() {
		return fmt.Errorf("parsing the data-plane policy: %v", diags)
	}
	c.gen++
	for _, w := range fleet {
		snap, err := p.Compile(w.Class(), fleet)
		if err != nil {
			return fmt.Errorf("compiling for %s: %w", w.ID, err)
		}
		secrets, err := c.secrets(w)
		if err != nil {
			return err
		}
		if err := c.srv.SetSnapshot(ctx, w.ID, fmt.Sprintf("%s-%d", snap.Version, c.gen), snap.Resources); err != nil {
			return err
		}
		c.mu.Lock()
		c.pending[w.ID] = secrets
		c.mu.Unlock()
	}
	c.deliverSecrets(ctx)
	return nil
}

// secrets returns the SDS secrets default (w's workload certificate) and
// ROOTCA, as the controller's CA delivers them.
func (c *compiledConfig) secrets(w nodemeta.Workload) ([]*tlsv3.Secret, error) {
	sa := w.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	ns := w.Namespace
	if ns == "" {
		ns = nodemeta.DefaultNamespace
	}
	cert, err := c.ca.Issue(ca.Leaf{ID: ca.Identity{TrustDomain: c.ca.TrustDomain(), Namespace: ns, ServiceAccount: sa}})
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", w.ID, err)
	}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	return []*tlsv3.Secret{
		{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(cert.ChainPEM), PrivateKey: inline(cert.KeyPEM),
		}}},
		{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(c.ca.Bundle()),
		}}},
	}, nil
}

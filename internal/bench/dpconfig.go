package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

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
	c := &compiledConfig{srv: xds.NewServer(), addr: lis.Addr().String(), ca: auth}
	go func() { _ = c.srv.Serve(ctx, lis) }()
	return c, nil
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
		s := *snap.Resources
		s.Resources[types.Secret] = cachev3.NewResources(fmt.Sprintf("s%d", c.gen), secrets)
		if err := c.srv.SetSnapshot(ctx, w.ID, fmt.Sprintf("%s-%d", snap.Version, c.gen), &s); err != nil {
			return err
		}
	}
	return nil
}

// secrets returns the SDS secrets default (w's workload certificate) and
// ROOTCA, as the controller's CA delivers them.
func (c *compiledConfig) secrets(w nodemeta.Workload) ([]types.Resource, error) {
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
	return []types.Resource{
		&tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(cert.ChainPEM), PrivateKey: inline(cert.KeyPEM),
		}}},
		&tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(c.ca.Bundle()),
		}}},
	}, nil
}

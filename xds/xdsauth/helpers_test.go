package xdsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/xds"
)

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

// testToken is the join token of the test planes.
const testToken = "0123456789abcdef0123456789abcdef"

// plane is a locked xDS server on loopback with its CA.
type plane struct {
	authority *ca.Authority
	material  ca.Material
	server    *xds.Server
	addr      string
	caFile    string
	tokenFile string
	// joins counts the certificates issued for the join token.
	joins *atomic.Int64
}

// countingAuth counts the tokens an Authenticator accepts.
type countingAuth struct {
	Authenticator
	n *atomic.Int64
}

func (c countingAuth) Authenticate(ctx context.Context, token string, declared Binding) (Binding, error) {
	b, err := c.Authenticator.Authenticate(ctx, token, declared)
	if err == nil {
		c.n.Add(1)
	}
	return b, err
}

// startPlane serves a locked xDS server, as the controller assembles one,
// until the test ends. Its root was created three days ago, so that a
// certificate issued "two days ago" can be expired.
func startPlane(t testing.TB) *plane {
	t.Helper()
	m, err := ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now().Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(ca.DefaultTrustDomain, m)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := NewJoinToken(testToken)
	if err != nil {
		t.Fatal(err)
	}
	lis := testnet.Listen(t)
	hosts, err := ServerHosts(lis.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := NewServerTLS(Static(authority), ca.Identity{Namespace: "gitmesh-system", ServiceAccount: "gitmesh"}, hosts)
	joins := new(atomic.Int64)
	s := xds.NewServer(
		xds.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(serverTLS.Config()))),
		xds.WithClientCertificates(),
		xds.WithServices(NewCertService(Static(authority), 0, nil, countingAuth{jt, joins}).Register),
		xds.WithAdmission(NewAdmitter(Static(authority), nil, nil).Admit),
	)
	testnet.Serve(t, lis, s.Serve)
	dir := t.TempDir()
	p := &plane{authority: authority, material: m, server: s, addr: lis.Addr().String(), joins: joins,
		caFile: filepath.Join(dir, "ca.pem"), tokenFile: filepath.Join(dir, "join-token")}
	writeFile(t, p.caFile, string(authority.Bundle()))
	writeFile(t, p.tokenFile, testToken+"\n")
	return p
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// joiner returns a Joiner for the plane declaring b, with the plane's token.
func (p *plane) joiner(t *testing.T, b Binding) *Joiner {
	t.Helper()
	j, err := NewJoiner(JoinConfig{XDSAddr: p.addr, CAFile: p.caFile, TokenFile: p.tokenFile, Declared: b})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// join returns the credentials of a node that joined declaring b.
func (p *plane) join(t *testing.T, b Binding) credentials.TransportCredentials {
	t.Helper()
	j := p.joiner(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := j.Join(ctx); err != nil {
		t.Fatalf("Join: %v", err)
	}
	return j.Credentials()
}

// credsWith returns credentials that verify the plane and present cert.
func (p *plane) credsWith(cert *ca.Certificate) credentials.TransportCredentials {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.authority.Bundle())
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if cert != nil {
		tc, err := tls.X509KeyPair(cert.ChainPEM, cert.KeyPEM)
		if err != nil {
			panic(err)
		}
		// Present it whatever CAs the server names, as a forger would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return credentials.NewTLS(cfg)
}

// issue issues a node certificate binding b from authority.
func issue(t *testing.T, authority *ca.Authority, b Binding) *ca.Certificate {
	t.Helper()
	l, err := b.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	c, err := authority.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// binding is node id's binding in namespace default, service account
// default, with labels app=<id>.
func binding(id string) Binding {
	return Binding{NodeID: id, ID: ca.Identity{TrustDomain: ca.DefaultTrustDomain, Namespace: "default", ServiceAccount: "default"},
		Labels: map[string]string{"app": id}}
}

// workloadOf is what the node of b announces.
func workloadOf(b Binding) nodemeta.Workload {
	return nodemeta.Workload{ID: b.NodeID, Service: b.Labels["app"], Namespace: b.ID.Namespace, ServiceAccount: b.ID.ServiceAccount,
		Role: nodemeta.RoleSidecar, Labels: b.Labels, Outbound: "127.0.0.1:15001"}
}

// assignSecret makes id known to server (an empty config snapshot) and
// assigns it its "default" secret, marked with the node's id.
func assignSecret(ctx context.Context, server *xds.Server, id string) error {
	empty, err := cachev3.NewSnapshot("v1", map[resource.Type][]types.Resource{})
	if err != nil {
		return err
	}
	if err := server.SetSnapshot(ctx, id, "v1", empty); err != nil {
		return err
	}
	_, err = server.SetSecrets(ctx, id, []*tlsv3.Secret{{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline("chain of " + id)}}}})
	return err
}

// fetchSecret opens an ADS stream as w with creds, asks for the "default"
// secret and returns the first response or the stream's error.
func fetchSecret(t *testing.T, addr string, creds credentials.TransportCredentials, w nodemeta.Workload) (*discoveryv3.DiscoveryResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	// A Send on a stream the server already ended fails with io.EOF;
	// Recv then returns the server's status.
	_ = st.Send(&discoveryv3.DiscoveryRequest{Node: w.Node(), TypeUrl: resource.SecretType, ResourceNames: []string{"default"}})
	return st.Recv()
}

func inline(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

// secretChain returns the marker of the first secret of resp.
func secretChain(t *testing.T, resp *discoveryv3.DiscoveryResponse) string {
	t.Helper()
	if len(resp.GetResources()) != 1 {
		t.Fatalf("got %d secrets, want 1", len(resp.GetResources()))
	}
	var s tlsv3.Secret
	if err := resp.GetResources()[0].UnmarshalTo(&s); err != nil {
		t.Fatal(err)
	}
	return s.GetTlsCertificate().GetCertificateChain().GetInlineString()
}

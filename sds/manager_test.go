package sds_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	sotwclient "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/sds"
	"github.com/gitmesh/gitmesh/xds"
)

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

// startXDS serves an xds.Server on loopback until the test ends.
func startXDS(t testing.TB, opts ...xds.Option) (*xds.Server, string) {
	t.Helper()
	lis := testnet.Listen(t)
	s := xds.NewServer(opts...)
	testnet.Serve(t, lis, s.Serve)
	return s, lis.Addr().String()
}

// newAuthority returns a CA with a fresh root.
func newAuthority(t testing.TB) *ca.Authority {
	t.Helper()
	m, err := ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.New(ca.DefaultTrustDomain, m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// memStore is a RootStore in memory.
type memStore struct{ saved []ca.Material }

func (s *memStore) Save(_ context.Context, m ca.Material) error {
	s.saved = append(s.saved, m)
	return nil
}

// startManager runs a Manager until the test ends.
func startManager(t testing.TB, fleet sds.Fleet, auth *ca.Authority, opts ...sds.Option) *sds.Manager {
	t.Helper()
	m := sds.New(fleet, auth, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return m
}

// got is one SDS response as a proxy decodes it.
type got struct {
	leaf   *x509.Certificate
	key    []byte
	chain  []byte
	roots  []*x509.Certificate
	bundle []byte
}

// proxy is an SDS subscriber over ADS (go-control-plane's own ADS client,
// a wildcard subscription to secrets).
type proxy struct {
	client sotwclient.ADSClient
	resps  chan got
	errs   chan error
	ack    chan bool // true: ACK the last response; false: leave it unACKed
	close  func()    // ends the stream and waits for the receiver
}

// connect opens an ADS stream for w and starts receiving its secrets.
func connect(t testing.TB, addr string, w nodemeta.Workload) *proxy {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{client: sotwclient.NewADSClient(ctx, w.Node(), resource.SecretType),
		resps: make(chan got, 16), errs: make(chan error, 1), ack: make(chan bool, 16)}
	if err := p.client.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := p.client.Fetch()
			if err != nil {
				p.errs <- err
				return
			}
			g := got{}
			for _, a := range resp.Resources {
				var s tlsv3.Secret
				if err := a.UnmarshalTo(&s); err != nil {
					p.errs <- err
					return
				}
				switch s.GetName() {
				case sds.SecretDefault:
					g.chain = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
					g.key = s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()
					g.leaf = parseCerts(t, g.chain)[0]
				case sds.SecretRoot:
					g.bundle = s.GetValidationContext().GetTrustedCa().GetInlineBytes()
					g.roots = parseCerts(t, g.bundle)
				}
			}
			p.resps <- g
			select {
			case ack := <-p.ack:
				if !ack {
					<-ctx.Done()
					return
				}
			case <-ctx.Done():
				return
			}
			if err := p.client.Ack(); err != nil {
				p.errs <- err
				return
			}
		}
	}()
	var once sync.Once
	p.close = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = conn.Close()
		})
	}
	t.Cleanup(p.close)
	return p
}

// next returns the next response and ACKs it (or not).
func (p *proxy) next(t *testing.T, ack bool) got {
	t.Helper()
	select {
	case g := <-p.resps:
		p.ack <- ack
		return g
	case err := <-p.errs:
		t.Fatalf("stream failed: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no secrets arrived")
	}
	return got{}
}

func parseCerts(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verify checks that g's leaf chains to one of its roots and names want.
func verify(t *testing.T, g got, want string) {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range g.roots {
		pool.AddCert(r)
	}
	if _, err := g.leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not verify against ROOTCA: %v", err)
	}
	if len(g.leaf.URIs) != 1 || g.leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs %v; want [%s]", g.leaf.URIs, want)
	}
	if len(g.key) == 0 {
		t.Fatal("no private key")
	}
}

func sidecar(id, ns, sa string) nodemeta.Workload {
	return nodemeta.Workload{ID: id, Service: id, Namespace: ns, ServiceAccount: sa, Role: nodemeta.RoleSidecar,
		Outbound: "127.0.0.1:15001", Labels: map[string]string{"app": id}}
}

// TestIssueAndRenew: each node gets its own identity's certificate and the
// roots; a short TTL is renewed on the open stream before it expires.
func TestIssueAndRenew(t *testing.T) {
	s, addr := startXDS(t)
	startManager(t, s, newAuthority(t), sds.WithCertTTL(3*time.Second))

	a := connect(t, addr, sidecar("a", "shop", "cart"))
	b := connect(t, addr, sidecar("b", "", ""))
	ga := a.next(t, true)
	verify(t, ga, "spiffe://cluster.local/ns/shop/sa/cart")
	gb := b.next(t, true)
	verify(t, gb, "spiffe://cluster.local/ns/default/sa/default")
	if life := time.Until(ga.leaf.NotAfter); life > 3*time.Second {
		t.Fatalf("certificate valid for %v more; want at most the TTL 3s", life)
	}

	// Renewal at half the lifetime, on the same stream.
	start := time.Now()
	ga2 := a.next(t, true)
	if ga2.leaf.SerialNumber.Cmp(ga.leaf.SerialNumber) == 0 {
		t.Fatal("renewal kept the serial")
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("renewed after %v; want about half of the 3s lifetime", took)
	}
	if !time.Now().Before(ga.leaf.NotAfter) {
		t.Fatal("renewed only after the old certificate expired")
	}
	verify(t, ga2, "spiffe://cluster.local/ns/shop/sa/cart")
	select {
	case err := <-a.errs:
		t.Fatalf("stream of a ended: %v", err)
	default:
	}
}

// TestRotateRootTwoPhases: the bundle of old and new roots reaches every
// node, and is ACKed, before any certificate of the new root; Prune is
// refused while a node still holds a certificate of the old root.
func TestRotateRootTwoPhases(t *testing.T) {
	s, addr := startXDS(t)
	auth := newAuthority(t)
	oldRoot := auth.Root()
	store := &memStore{}
	m := startManager(t, s, auth, sds.WithRootStore(store), sds.WithAckTimeout(time.Second))

	a := connect(t, addr, sidecar("a", "shop", "cart"))
	b := connect(t, addr, sidecar("b", "shop", "web"))
	a.next(t, true)
	gb := b.next(t, true)
	if err := gb.leaf.CheckSignatureFrom(oldRoot); err != nil {
		t.Fatalf("first certificate not from the old root: %v", err)
	}
	waitStatus(t, m, "both nodes issued", func(st admin.CAStatus) bool { return st.Workloads == 2 })

	if _, err := m.Prune(context.Background(), false); !errors.Is(err, sds.ErrNothingToPrune) {
		t.Fatalf("Prune before a rotation = %v; want ErrNothingToPrune", err)
	}

	type result struct {
		res admin.CAResponse
		err error
	}
	rotated := make(chan result, 1)
	go func() {
		res, err := m.Rotate(context.Background())
		rotated <- result{res, err}
	}()

	// Phase 1: the same leaf with the bundle of both roots. a ACKs; b
	// leaves it unACKed, so phase 1 waits for it until the bound.
	p1a := a.next(t, true)
	p1b := b.next(t, false)
	for _, g := range []got{p1a, p1b} {
		if len(g.roots) != 2 {
			t.Fatalf("phase 1 bundle holds %d roots; want old and new", len(g.roots))
		}
		if err := g.leaf.CheckSignatureFrom(oldRoot); err != nil {
			t.Fatalf("phase 1 pushed a leaf of the new root before the bundle was ACKed: %v", err)
		}
	}
	// Phase 2: a gets a leaf of the new root; b never ACKed, so it is
	// given nothing more on its stream (SotW).
	p2a := a.next(t, true)
	newRoot := p2a.roots[0]
	if newRoot.Equal(oldRoot) {
		t.Fatal("the bundle's first root is still the old one")
	}
	if err := p2a.leaf.CheckSignatureFrom(newRoot); err != nil {
		t.Fatalf("phase 2 leaf not from the new root: %v", err)
	}
	verify(t, p2a, "spiffe://cluster.local/ns/shop/sa/cart")

	var r result
	select {
	case r = <-rotated:
	case <-time.After(waitFor):
		t.Fatal("Rotate did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(r.res.BundleAcked, []string{"a"}) || !slices.Equal(r.res.BundlePending, []string{"b"}) ||
		!slices.Equal(r.res.Reissued, []string{"a"}) || !slices.Equal(r.res.ReissuePending, []string{"b"}) {
		t.Fatalf("Rotate = %+v; want a ACKed both phases and b pending", r.res)
	}
	if st := m.Status(); !slices.Equal(st.OldRootWorkloads, []string{"b"}) || st.TrustedRoots != 2 {
		t.Fatalf("status after rotation %+v; want b on the old root, 2 trusted roots", st)
	}
	if len(store.saved) != 1 || len(parseCerts(t, store.saved[0].TrustedPEM)) != 1 {
		t.Fatalf("saved %d materials; want the new root with the old one trusted", len(store.saved))
	}

	// b still holds its old-root certificate: prune refused, unless forced.
	if _, err := m.Prune(context.Background(), false); !errors.Is(err, sds.ErrOldRootInUse) {
		t.Fatalf("Prune = %v; want ErrOldRootInUse", err)
	}
	if _, err := m.Prune(context.Background(), true); err != nil {
		t.Fatalf("Prune(force) = %v", err)
	}
	st := m.Status()
	if st.TrustedRoots != 1 || len(store.saved) != 2 || len(store.saved[1].TrustedPEM) != 0 {
		t.Fatalf("after prune: %d trusted roots, %d saves; want 1 root persisted", st.TrustedRoots, len(store.saved))
	}
	if g := a.next(t, true); len(g.roots) != 1 || !g.roots[0].Equal(newRoot) {
		t.Fatalf("after prune a got %d roots; want the new root only", len(g.roots))
	}
}

// TestForgetsForgottenNodes: a node the xDS server forgets (its grace
// period after disconnecting ended) is forgotten by the manager too.
func TestForgetsForgottenNodes(t *testing.T) {
	s, addr := startXDS(t, xds.WithGracePeriod(50*time.Millisecond))
	m := startManager(t, s, newAuthority(t))
	p := connect(t, addr, sidecar("a", "shop", "cart"))
	p.next(t, true)
	waitStatus(t, m, "a issued", func(st admin.CAStatus) bool { return st.Workloads == 1 })
	p.close()
	waitStatus(t, m, "a forgotten", func(st admin.CAStatus) bool { return st.Workloads == 0 })
}

func TestOperatorRootIsNotRotated(t *testing.T) {
	s, _ := startXDS(t)
	m := sds.New(s, newAuthority(t))
	if _, err := m.Rotate(context.Background()); !errors.Is(err, sds.ErrOperatorRoot) {
		t.Fatalf("Rotate = %v; want ErrOperatorRoot", err)
	}
	if _, err := m.Prune(context.Background(), true); !errors.Is(err, sds.ErrOperatorRoot) {
		t.Fatalf("Prune = %v; want ErrOperatorRoot", err)
	}
	if !m.Status().OperatorSupplied {
		t.Fatal("Status().OperatorSupplied = false")
	}
}

// waitStatus polls the Manager's status until cond holds.
func waitStatus(t testing.TB, m *sds.Manager, what string, cond func(admin.CAStatus) bool) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := m.Status()
		if cond(st) {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; status %+v", what, st)
		case <-tick.C:
		}
	}
}

package xdsauth

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/gitmesh/gitmesh/ca"
)

func TestJoinIssuesABoundCertificate(t *testing.T) {
	p := startPlane(t)
	b := Binding{NodeID: "reviews-v2-1", ID: ca.Identity{Namespace: "shop", ServiceAccount: "reviews"},
		Labels: map[string]string{"app": "reviews", "version": "v2"}, Pod: "claimed-pod"}
	j := p.joiner(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := j.Join(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := j.Certificate()
	got, err := BindingOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != b.NodeID || got.ID.String() != "spiffe://cluster.local/ns/shop/sa/reviews" ||
		got.Labels["version"] != "v2" || len(got.Labels) != 2 || got.Pod != "" {
		t.Errorf("binding = %+v", got)
	}
	if _, err := p.authority.Verify([]*x509.Certificate{leaf}); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	if ttl := time.Until(leaf.NotAfter); ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("certificate valid for %s more, want about 24h", ttl)
	}

	w := workloadOf(got)
	if err := assignSecret(ctx, p.server, w.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := fetchSecret(t, p.addr, j.Credentials(), w)
	if err != nil {
		t.Fatalf("ADS with the joined certificate: %v", err)
	}
	if got := secretChain(t, resp); got != "chain of "+w.ID {
		t.Errorf("secret = %q", got)
	}
}

func TestJoinRefused(t *testing.T) {
	p := startPlane(t)
	for _, tc := range []struct {
		name, token, want string
		code              codes.Code
	}{
		{"wrong token", "fedcba9876543210fedcba9876543210", "neither the join token", codes.Unauthenticated},
		{"no token", "", "no credential", codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.token != "" {
				writeFile(t, p.tokenFile+"."+tc.name, tc.token)
				j, err := NewJoiner(JoinConfig{XDSAddr: p.addr, CAFile: p.caFile, TokenFile: p.tokenFile + "." + tc.name, Declared: binding("a")})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				err = j.Join(ctx)
				if err == nil || !strings.HasPrefix(err.Error(), "xds: join refused: ") || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Join = %v; want xds: join refused: ...%s", err, tc.want)
				}
				return
			}
			conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(p.credsWith(nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{Csr: "x"})
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CreateCertificate = %v; want %s ...%s", err, tc.code, tc.want)
			}
		})
	}
}

// TestWithoutCertificateNothingIsServed: a proxy without the join token
// (so without a certificate) gets nothing, over TLS or plain text, and
// never becomes a node: it cannot ACK, NACK or announce anything.
func TestWithoutCertificateNothingIsServed(t *testing.T) {
	p := startPlane(t)
	w := workloadOf(binding("a"))
	if err := assignSecret(context.Background(), p.server, w.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("TLS without client certificate", func(t *testing.T) {
		j := p.joiner(t, binding("a")) // never joined: presents no certificate
		_, err := fetchSecret(t, p.addr, j.Credentials(), w)
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "client certificate is required") {
			t.Fatalf("stream = %v; want Unauthenticated", err)
		}
	})
	t.Run("plain text", func(t *testing.T) {
		_, err := fetchSecret(t, p.addr, insecure.NewCredentials(), w)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream = %v; want Unavailable (no TLS handshake)", err)
		}
	})
	if n, _ := p.server.Node(w.ID); n.Connected || n.LastSeen != (time.Time{}) || n.Workload.Service != "" {
		t.Errorf("node %s = %+v; an unauthenticated stream reached it", w.ID, n)
	}
}

func TestBadClientCertificatesRefusedAtHandshake(t *testing.T) {
	p := startPlane(t)
	foreignRoot, err := ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := ca.New(ca.DefaultTrustDomain, foreignRoot)
	if err != nil {
		t.Fatal(err)
	}
	past, err := ca.New(ca.DefaultTrustDomain, p.material, ca.WithClock(func() time.Time { return time.Now().Add(-48 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	otherDomain, err := ca.New("evil.example", p.material)
	if err != nil {
		t.Fatal(err)
	}
	b := binding("a")
	evil := b
	evil.ID.TrustDomain = "evil.example"
	w := workloadOf(b)
	for _, tc := range []struct {
		name string
		cert *ca.Certificate
	}{
		{"foreign CA", issue(t, foreign, b)},
		{"expired", issue(t, past, b)},
		{"other trust domain", issue(t, otherDomain, evil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fetchSecret(t, p.addr, p.credsWith(tc.cert), w)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream = %v; want Unavailable (handshake refused)", err)
			}
			// Nor may it renew itself into a good certificate.
			conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(p.credsWith(tc.cert)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(context.Background(),
				&securityv1alpha1.IstioCertificateRequest{Csr: "x"}); status.Code(err) != codes.Unavailable {
				t.Fatalf("renewal = %v; want Unavailable", err)
			}
		})
	}
	if n, _ := p.server.Node(w.ID); n.Connected {
		t.Errorf("node %s connected with a bad certificate", w.ID)
	}
}

// TestNodeCannotClaimAnother: the node id, namespace, service account and
// labels a stream announces must be its certificate's. Since a stream is
// bound to its node, only that node's snapshot (its secrets) reaches it,
// and only the node itself can ACK or NACK on it.
func TestNodeCannotClaimAnother(t *testing.T) {
	p := startPlane(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := assignSecret(ctx, p.server, id); err != nil {
			t.Fatal(err)
		}
	}
	credsA := p.join(t, binding("a"))
	own := workloadOf(binding("a"))
	for _, tc := range []struct {
		name   string
		edit   func(*Binding)
		errHas string
	}{
		{"another node id", func(b *Binding) { b.NodeID = "b"; b.Labels = map[string]string{"app": "a"} }, `node id "b"`},
		{"another namespace", func(b *Binding) { b.ID.Namespace = "kube-system" }, `namespace "kube-system"`},
		{"another service account", func(b *Binding) { b.ID.ServiceAccount = "admin" }, `service account "admin"`},
		{"other labels", func(b *Binding) { b.Labels = map[string]string{"app": "b"} }, "labels map[app:b]"},
		{"extra label", func(b *Binding) { b.Labels = map[string]string{"app": "a", "version": "v2"} }, "labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := binding("a")
			tc.edit(&b)
			_, err := fetchSecret(t, p.addr, credsA, workloadOf(b))
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("stream = %v; want PermissionDenied ...%s", err, tc.errHas)
			}
		})
	}
	t.Run("own", func(t *testing.T) {
		resp, err := fetchSecret(t, p.addr, credsA, own)
		if err != nil {
			t.Fatal(err)
		}
		if got := secretChain(t, resp); got != "chain of a" {
			t.Errorf("node a got secret %q", got)
		}
	})
	if n, _ := p.server.Node("b"); n.Connected || n.Workload.Service != "" {
		t.Errorf("node b = %+v; node a reached it", n)
	}

	t.Run("certificate without binding", func(t *testing.T) {
		c, err := p.authority.Issue(ca.Leaf{ID: binding("a").ID, CommonName: "a"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = fetchSecret(t, p.addr, p.credsWith(c), own)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no gitmesh binding") {
			t.Fatalf("stream = %v; want PermissionDenied", err)
		}
	})
}

func TestAdminAddressOnlyFromThePeer(t *testing.T) {
	p := startPlane(t)
	for _, tc := range []struct {
		id, admin, want string
	}{
		{"local", "127.0.0.1:15020", "127.0.0.1:15020"},
		{"localhost", "localhost:15020", "localhost:15020"},
		{"every-address", "0.0.0.0:15020", "127.0.0.1:15020"},
		{"elsewhere", "10.9.8.7:15020", ""},
		{"name", "metrics.example.com:15020", ""},
	} {
		t.Run(tc.id, func(t *testing.T) {
			b := binding(tc.id)
			if err := assignSecret(context.Background(), p.server, tc.id); err != nil {
				t.Fatal(err)
			}
			w := workloadOf(b)
			w.Admin = tc.admin
			if _, err := fetchSecret(t, p.addr, p.join(t, b), w); err != nil {
				t.Fatal(err)
			}
			n, _ := p.server.Node(tc.id)
			if n.Workload.Admin != tc.want {
				t.Errorf("admin address = %q; want %q", n.Workload.Admin, tc.want)
			}
		})
	}
}

func TestRenewalKeepsTheBinding(t *testing.T) {
	p := startPlane(t)
	b := binding("a")
	j, err := NewJoiner(JoinConfig{XDSAddr: p.addr, CAFile: p.caFile, TokenFile: p.tokenFile, Declared: b, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := j.Join(ctx); err != nil {
		t.Fatal(err)
	}
	first := j.Certificate()
	// Renewal authenticates with the certificate: the token is gone.
	writeFile(t, p.tokenFile, "not-the-token-any-more-0123456789")
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	deadline := time.Now().Add(waitFor)
	for j.Certificate().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("certificate not renewed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := BindingOf(j.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != "a" || got.ID != b.ID || got.Labels["app"] != "a" {
		t.Errorf("renewed binding = %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestBindingRoundTrip(t *testing.T) {
	p := startPlane(t)
	for _, b := range []Binding{
		binding("a"),
		{NodeID: "pod-1", ID: ca.Identity{Namespace: "ns", ServiceAccount: "sa"}, Pod: "pod-1"},
		{NodeID: "n", ID: ca.Identity{Namespace: "ns", ServiceAccount: "sa"}, Labels: map[string]string{"a": "1", "b": "ü"}},
	} {
		c := issue(t, p.authority, b)
		got, err := BindingOf(c.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if got.NodeID != b.NodeID || got.Pod != b.Pod || len(got.Labels) != len(b.Labels) {
			t.Errorf("BindingOf = %+v; want %+v", got, b)
		}
		for k, v := range b.Labels {
			if got.Labels[k] != v {
				t.Errorf("label %s = %q; want %q", k, got.Labels[k], v)
			}
		}
	}
}

func TestJoinVerifiesTheController(t *testing.T) {
	p := startPlane(t)
	other, err := ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJoiner(JoinConfig{XDSAddr: p.addr, CAPEM: other.CertPEM, TokenFile: p.tokenFile, Declared: binding("a")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// Not a refusal by the controller: Join keeps retrying until ctx ends.
	if err := j.Join(ctx); err == nil || j.Certificate() != nil {
		t.Fatalf("Join against a controller of another CA = %v; want it unverified", err)
	}
}

func TestResolveMode(t *testing.T) {
	for _, tc := range []struct{ mode, addr, want string }{
		{"", "127.0.0.1:15010", AuthNone},
		{"", "[::1]:15010", AuthNone},
		{"", "localhost:15010", AuthNone},
		{"", ":15010", AuthRequired},
		{"", "0.0.0.0:15010", AuthRequired},
		{"", "10.0.0.5:15010", AuthRequired},
		{"required", "127.0.0.1:0", AuthRequired},
		{"none", "0.0.0.0:15010", AuthNone},
	} {
		t.Run(tc.mode+"@"+tc.addr, func(t *testing.T) {
			got, err := ResolveMode(tc.mode, tc.addr)
			if err != nil || got != tc.want {
				t.Errorf("ResolveMode = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ResolveMode("maybe", ":1"); err == nil {
		t.Error("ResolveMode accepted mode maybe")
	}
}

// TestServerCertificateNames: the proxy verifies the controller by the
// host it dials.
func TestServerCertificateNames(t *testing.T) {
	p := startPlane(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.authority.Bundle())
	st := NewServerTLS(Static(p.authority), ca.Identity{Namespace: "gitmesh-system", ServiceAccount: "gitmesh"},
		[]string{"localhost", "127.0.0.1", "gitmesh-xds.gitmesh-system.svc"})
	c, err := st.certificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "gitmesh-xds.gitmesh-system.svc"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "evil.example"}); err == nil {
		t.Error("serving certificate verifies for evil.example")
	}
	again, _ := st.certificate()
	if again != c {
		t.Error("serving certificate reissued before half its life")
	}
	if _, err := p.authority.Rotate(0); err != nil {
		t.Fatal(err)
	}
	if rotated, _ := st.certificate(); rotated == c {
		t.Error("serving certificate not reissued after a root rotation")
	}
}

// TestExpiredCertificateRejoinsWithToken: once its certificate has
// expired the Joiner cannot renew with it and joins with the token again.
func TestExpiredCertificateRejoinsWithToken(t *testing.T) {
	p := startPlane(t)
	j := p.joiner(t, binding("a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := j.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.joins.Load(); n != 1 {
		t.Fatalf("%d joins with the token; want 1", n)
	}
	first := j.Certificate()
	j.mu.Lock()
	j.notAfter = time.Now().Add(-time.Second) // as if it had expired
	j.renewAt = j.notAfter
	j.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	deadline := time.Now().Add(waitFor)
	for j.Certificate().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("did not rejoin")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.joins.Load(); n != 2 {
		t.Errorf("%d joins with the token; want 2 (the expired certificate cannot renew itself)", n)
	}
	cancel()
	<-done
}

func TestServerCertificateFollowsRootRotation(t *testing.T) {
	p := startPlane(t)
	st := NewServerTLS(Static(p.authority), ca.Identity{Namespace: "gitmesh-system", ServiceAccount: "gitmesh"}, []string{"localhost"})
	before, err := st.certificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.authority.Rotate(0); err != nil {
		t.Fatal(err)
	}
	after, err := st.certificate()
	if err != nil {
		t.Fatal(err)
	}
	if after == before || !p.authority.IssuedByRoot(after.Leaf) {
		t.Error("serving certificate not reissued by the new root")
	}
}

// BenchmarkJoin measures one join: key, CSR, a TLS connection, the
// token check and the signature.
func BenchmarkJoin(b *testing.B) {
	p := startPlane(b)
	j, err := NewJoiner(JoinConfig{XDSAddr: p.addr, CAFile: p.caFile, TokenFile: p.tokenFile, Declared: binding("a")})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := j.request(context.Background(), true); err != nil {
			b.Fatal(err)
		}
	}
}

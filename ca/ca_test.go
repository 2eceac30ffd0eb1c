package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newAuthority(t *testing.T, opts ...Option) *Authority {
	t.Helper()
	m, err := NewRoot(DefaultTrustDomain, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(DefaultTrustDomain, m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func parseChain(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCerts(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

var sleep = Identity{Namespace: "default", ServiceAccount: "sleep"}

func TestIssueAndVerify(t *testing.T) {
	a := newAuthority(t)
	c, err := a.Issue(Leaf{ID: sleep, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Leaf.URIs[0].String(), "spiffe://cluster.local/ns/default/sa/sleep"; got != want {
		t.Errorf("URI SAN = %s, want %s", got, want)
	}
	if d := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); d < time.Hour || d > time.Hour+2*backdate {
		t.Errorf("validity %s, want about 1h", d)
	}
	if pub, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.Leaf.PublicKey)
	}
	chain := parseChain(t, c.ChainPEM)
	id, err := a.Verify(chain)
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://cluster.local/ns/default/sa/sleep" || id.Principal() != "cluster.local/ns/default/sa/sleep" {
		t.Errorf("identity = %s (%s)", id, id.Principal())
	}
	if !a.IssuedByRoot(c.Leaf) {
		t.Error("IssuedByRoot = false for a fresh certificate")
	}
}

func TestVerifyRefuses(t *testing.T) {
	a := newAuthority(t)
	foreign := newAuthority(t)
	later := time.Now().Add(2 * time.Hour)
	expiring := newAuthority(t, WithClock(func() time.Time { return later }))
	expiring.mu.Lock()
	expiring.cert, expiring.certPEM, expiring.key = a.cert, a.certPEM, a.key
	expiring.mu.Unlock()

	other, err := New("example.org", a.Material())
	if err != nil {
		t.Fatal(err)
	}
	fromForeign, _ := foreign.Issue(Leaf{ID: sleep})
	short, _ := a.Issue(Leaf{ID: sleep, TTL: time.Minute})
	otherTD, _ := other.Issue(Leaf{ID: sleep})
	for _, tc := range []struct {
		name  string
		a     *Authority
		chain []byte
		want  string
	}{
		{"foreign CA", a, fromForeign.ChainPEM, "unknown authority"},
		{"expired", expiring, short.ChainPEM, "expired"},
		{"other trust domain", a, otherTD.ChainPEM, `trust domain "example.org"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := parseChain(t, tc.chain)
			if _, err := tc.a.Verify(chain[:1]); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSignCSRUsesCallerKeyAndOurNames(t *testing.T) {
	a := newAuthority(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"evil.example"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Leaf{ID: sleep, CommonName: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyPEM != nil || !key.PublicKey.Equal(c.Leaf.PublicKey) {
		t.Error("signed certificate does not carry the request's key")
	}
	if len(c.Leaf.DNSNames) != 0 || c.Leaf.Subject.CommonName != "node-1" {
		t.Errorf("names = %v %q, want the Leaf's only", c.Leaf.DNSNames, c.Leaf.Subject.CommonName)
	}
	if _, err := a.SignCSR([]byte("garbage"), Leaf{ID: sleep}); err == nil {
		t.Error("SignCSR accepted garbage")
	}
}

func TestRotateKeepsOldCertificatesValidUntilPrune(t *testing.T) {
	a := newAuthority(t)
	old, _ := a.Issue(Leaf{ID: sleep})
	if _, err := a.Rotate(0); err != nil {
		t.Fatal(err)
	}
	fresh, _ := a.Issue(Leaf{ID: sleep})
	if a.IssuedByRoot(old.Leaf) || !a.IssuedByRoot(fresh.Leaf) {
		t.Error("IssuedByRoot does not tell the old root from the new")
	}
	if n := len(parseChain(t, a.Bundle())); n != 2 {
		t.Fatalf("bundle has %d roots during rotation, want 2", n)
	}
	if n := a.Roots(); n != 2 {
		t.Fatalf("Roots() = %d during rotation; want 2", n)
	}
	for name, c := range map[string]*Certificate{"old": old, "new": fresh} {
		if _, err := a.Verify(parseChain(t, c.ChainPEM)[:1]); err != nil {
			t.Errorf("%s certificate during rotation: %v", name, err)
		}
	}
	// A restart with the persisted material trusts both as well.
	b, err := New(DefaultTrustDomain, a.Material())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(parseChain(t, old.ChainPEM)[:1]); err != nil {
		t.Errorf("old certificate after reload: %v", err)
	}
	a.Prune()
	if n := a.Roots(); n != 1 {
		t.Errorf("Roots() = %d after Prune; want 1", n)
	}
	if _, err := a.Verify(parseChain(t, old.ChainPEM)[:1]); err == nil {
		t.Error("old certificate still valid after Prune")
	}
	if _, err := a.Verify(parseChain(t, fresh.ChainPEM)[:1]); err != nil {
		t.Errorf("new certificate after Prune: %v", err)
	}
}

func TestNewRefusesBadMaterial(t *testing.T) {
	m1, _ := NewRoot(DefaultTrustDomain, 0, time.Now())
	m2, _ := NewRoot(DefaultTrustDomain, 0, time.Now())
	a := newAuthority(t)
	leaf, _ := a.Issue(Leaf{ID: sleep})
	expired, _ := NewRoot(DefaultTrustDomain, time.Hour, time.Now().Add(-2*time.Hour))
	for _, tc := range []struct {
		name string
		m    Material
		want string
	}{
		{"key of another root", Material{CertPEM: m1.CertPEM, KeyPEM: m2.KeyPEM}, "does not match"},
		{"not a CA", Material{CertPEM: parsePEMBlocks(leaf.ChainPEM)[0], KeyPEM: leaf.KeyPEM}, "not a CA"},
		{"expired", expired, "not now"},
		{"garbage", Material{CertPEM: []byte("x"), KeyPEM: m1.KeyPEM}, "CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New("", tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func parsePEMBlocks(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(blk))
	}
}

func TestLoadDirGeneratesOnceAndPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	m, created, err := LoadDir(dir, DefaultTrustDomain, time.Now())
	if err != nil || !created {
		t.Fatalf("LoadDir = %v, created %v", err, created)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v (%v), want 0600", fi.Mode(), err)
	}
	again, created, err := LoadDir(dir, DefaultTrustDomain, time.Now())
	if err != nil || created || string(again.CertPEM) != string(m.CertPEM) {
		t.Fatalf("second LoadDir: created=%v err=%v, same root=%v", created, err, string(again.CertPEM) == string(m.CertPEM))
	}
	// A directory with a certificate but no key is an error, not a reason
	// to generate a new root over it.
	os.Remove(filepath.Join(dir, KeyFile))
	if _, _, err := LoadDir(dir, DefaultTrustDomain, time.Now()); err == nil {
		t.Fatal("LoadDir generated a root over a half-present one")
	}
}

func TestParseSPIFFEID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"spiffe://cluster.local/ns/default/sa/sleep", true},
		{"spiffe://cluster.local/ns/default", false},
		{"https://cluster.local/ns/default/sa/sleep", false},
		{"spiffe://cluster.local/ns//sa/sleep", false},
		{"spiffe://cluster.local/ns/a/sa/b?x=1", false},
	} {
		id, err := ParseSPIFFEID(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSPIFFEID(%q) = %v, %v; want ok=%v", tc.in, id, err, tc.ok)
		}
		if tc.ok && id.String() != tc.in {
			t.Errorf("round trip %q -> %q", tc.in, id.String())
		}
	}
}

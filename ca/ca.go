// Package ca is the mesh's certificate authority: an ECDSA P-256 root, the
// roots it still trusts during a rotation, and the short-lived workload
// certificates it issues with SPIFFE ids
// (spiffe://<trust domain>/ns/<namespace>/sa/<service account>), as
// Istio's istiod CA does.
//
// The package does no I/O except in files.go; where a root is kept (a
// state directory, a Kubernetes Secret) is the caller's choice. An
// Authority is safe for concurrent use; Rotate and Prune change it in
// place.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"time"
)

// Defaults.
const (
	// DefaultRootValidity is how long a generated root is valid.
	DefaultRootValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertTTL is the lifetime of a workload certificate (Istio's
	// DEFAULT_WORKLOAD_CERT_TTL).
	DefaultCertTTL = 24 * time.Hour
	// backdate is subtracted from NotBefore so that a peer whose clock
	// runs a little behind accepts a certificate issued just now.
	backdate = time.Minute
)

// Material is what a CA persists: its signing root (certificate and key,
// PEM) and the earlier roots it still trusts (PEM, possibly empty).
type Material struct {
	CertPEM    []byte
	KeyPEM     []byte
	TrustedPEM []byte
}

// Authority signs workload certificates with one root and trusts that
// root plus the roots a rotation kept.
type Authority struct {
	trustDomain string
	now         func() time.Time

	mu      sync.RWMutex
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
	trusted []*x509.Certificate // earlier roots, oldest first
	bundle  []byte              // certPEM, then trusted's PEM: Bundle's result, built when they change
	pool    *x509.CertPool      // cert and trusted: Pool's result, built when they change
}

// Option configures an Authority.
type Option func(*Authority)

// WithClock sets the clock (tests). Default: time.Now.
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// NewRoot generates a self-signed ECDSA P-256 root for trustDomain, valid
// for validity (DefaultRootValidity when zero or less) from now.
func NewRoot(trustDomain string, validity time.Duration, now time.Time) (Material, error) {
	if validity <= 0 {
		validity = DefaultRootValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Material{}, fmt.Errorf("generating root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Material{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "gitmesh root CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Material{}, fmt.Errorf("creating root certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Material{}, fmt.Errorf("encoding root key: %w", err)
	}
	return Material{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// New returns an Authority for trustDomain that signs with m's root. The
// root must be a CA certificate matching its key and valid now.
func New(trustDomain string, m Material, opts ...Option) (*Authority, error) {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	a := &Authority{trustDomain: trustDomain, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if err := a.load(m); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Authority) load(m Material) error {
	cert, err := parseCert(m.CertPEM)
	if err != nil {
		return fmt.Errorf("loading CA certificate: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("loading CA certificate: not a CA certificate (basicConstraints CA:TRUE and keyUsage certSign required)")
	}
	now := a.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("loading CA certificate: valid from %s to %s, not now", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(m.KeyPEM)
	if err != nil {
		return fmt.Errorf("loading CA key: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return errors.New("loading CA key: it does not match the CA certificate")
	}
	trusted, err := parseCerts(m.TrustedPEM)
	if err != nil {
		return fmt.Errorf("loading trusted roots: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cert, a.certPEM, a.key, a.keyPEM = cert, bytes.Clone(m.CertPEM), key, bytes.Clone(m.KeyPEM)
	a.trusted = nil
	for _, t := range trusted {
		if !t.Equal(cert) {
			a.trusted = append(a.trusted, t)
		}
	}
	a.bundle, a.pool = a.encodeBundle(), a.newPool()
	return nil
}

// encodeBundle returns the PEM of certPEM and every trusted root; a.mu is
// held for writing.
func (a *Authority) encodeBundle() []byte {
	var b bytes.Buffer
	b.Write(a.certPEM)
	for _, t := range a.trusted {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: t.Raw})
	}
	return b.Bytes()
}

// TrustDomain returns the trust domain the Authority issues ids in.
func (a *Authority) TrustDomain() string { return a.trustDomain }

// Material returns what to persist.
func (a *Authority) Material() Material {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var trusted bytes.Buffer
	for _, t := range a.trusted {
		_ = pem.Encode(&trusted, &pem.Block{Type: "CERTIFICATE", Bytes: t.Raw})
	}
	return Material{CertPEM: bytes.Clone(a.certPEM), KeyPEM: bytes.Clone(a.keyPEM), TrustedPEM: trusted.Bytes()}
}

// Root returns the signing root.
func (a *Authority) Root() *x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cert
}

// Bundle returns the PEM of every trusted root, the signing root first:
// the ROOTCA a proxy validates peers with. It is encoded once per root
// change, not per call (the SDS manager asks on every sync), and shared:
// callers must not modify it.
func (a *Authority) Bundle() []byte {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.bundle
}

// Roots returns how many roots are trusted: the signing root and the
// earlier ones Prune has not dropped (the certificates Bundle holds).
func (a *Authority) Roots() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return 1 + len(a.trusted)
}

// Pool returns the trusted roots as a pool. It is built once per root
// change (every TLS handshake and join verification asks for it) and
// shared: callers must not add to it.
func (a *Authority) Pool() *x509.CertPool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.pool
}

// newPool returns a pool of cert and every trusted root; a.mu is held for
// writing.
func (a *Authority) newPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.cert)
	for _, t := range a.trusted {
		p.AddCert(t)
	}
	return p
}

// Rotate replaces the signing root with a new one, generated for
// validity, and keeps trusting the old one until Prune: certificates the
// old root issued stay valid while the new bundle reaches every peer. It
// returns the new Material to persist.
func (a *Authority) Rotate(validity time.Duration) (Material, error) {
	m, err := NewRoot(a.trustDomain, validity, a.now())
	if err != nil {
		return Material{}, err
	}
	old := a.Material()
	var trusted bytes.Buffer
	trusted.Write(old.TrustedPEM)
	trusted.Write(old.CertPEM)
	m.TrustedPEM = trusted.Bytes()
	if err := a.load(m); err != nil {
		return Material{}, err
	}
	return a.Material(), nil
}

// Prune stops trusting every root but the signing one and returns the
// Material to persist. Call it once no certificate of an earlier root is
// in use.
func (a *Authority) Prune() Material {
	a.mu.Lock()
	a.trusted = nil
	a.bundle, a.pool = a.encodeBundle(), a.newPool()
	a.mu.Unlock()
	return a.Material()
}

// IssuedByRoot reports whether leaf was signed by the current signing
// root (a certificate from an earlier root should be reissued).
func (a *Authority) IssuedByRoot(leaf *x509.Certificate) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return bytes.Equal(leaf.RawIssuer, a.cert.RawSubject) && leaf.CheckSignatureFrom(a.cert) == nil
}

// Leaf describes a certificate to issue.
type Leaf struct {
	// ID is the SPIFFE identity (its TrustDomain defaults to the
	// Authority's).
	ID Identity
	// TTL defaults to DefaultCertTTL.
	TTL time.Duration
	// CommonName, DNSNames and IPs are optional extra names (an xDS
	// server's certificate names its hosts).
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// ExtraExtensions are added to the certificate as given (the xDS
	// join binds a node's metadata in one).
	ExtraExtensions []pkix.Extension
}

// Certificate is an issued certificate.
type Certificate struct {
	// ChainPEM is the leaf followed by the issuing root.
	ChainPEM []byte
	// KeyPEM is the private key (PKCS#8), nil when the caller sent a CSR.
	KeyPEM []byte
	// Leaf is the parsed leaf.
	Leaf *x509.Certificate
}

// Issue generates a key and issues a certificate for l.
func (a *Authority) Issue(l Leaf) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key for %s: %w", l.ID.Principal(), err)
	}
	c, err := a.sign(l, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key for %s: %w", l.ID.Principal(), err)
	}
	c.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return c, nil
}

// SignCSR issues a certificate for l with the public key of a PEM or DER
// certificate signing request. The names the request asks for are
// ignored: l decides them, as istiod's CA decides from the caller's
// credential.
func (a *Authority) SignCSR(csr []byte, l Leaf) (*Certificate, error) {
	if b, _ := pem.Decode(csr); b != nil {
		csr = b.Bytes
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("checking certificate request signature: %w", err)
	}
	return a.sign(l, req.PublicKey)
}

func (a *Authority) sign(l Leaf, pub crypto.PublicKey) (*Certificate, error) {
	if l.ID.TrustDomain == "" {
		l.ID.TrustDomain = a.trustDomain
	}
	if err := l.ID.Validate(); err != nil {
		return nil, fmt.Errorf("issuing certificate: %w", err)
	}
	ttl := l.TTL
	if ttl <= 0 {
		ttl = DefaultCertTTL
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	a.mu.RLock()
	root, key, rootPEM := a.cert, a.key, a.certPEM
	a.mu.RUnlock()
	notAfter := now.Add(ttl)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: l.CommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{l.ID.URL()},
		DNSNames:              l.DNSNames,
		IPAddresses:           l.IPs,
		ExtraExtensions:       l.ExtraExtensions,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, pub, key)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate for %s: %w", l.ID.Principal(), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing issued certificate: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &Certificate{ChainPEM: append(chain, rootPEM...), Leaf: leaf}, nil
}

// Verify checks a peer's certificate chain (leaf first) against the
// trusted roots at the Authority's current time and returns the leaf's
// SPIFFE identity, which must be in the Authority's trust domain.
func (a *Authority) Verify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("verifying peer: no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots: a.Pool(), Intermediates: inter, CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return Identity{}, fmt.Errorf("verifying peer: %w", err)
	}
	id, err := IdentityOf(chain[0])
	if err != nil {
		return Identity{}, fmt.Errorf("verifying peer: %w", err)
	}
	if id.TrustDomain != a.trustDomain {
		return Identity{}, fmt.Errorf("verifying peer: trust domain %q, want %q", id.TrustDomain, a.trustDomain)
	}
	return id, nil
}

// IdentityOf returns the SPIFFE identity in a certificate's URI SANs.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return identityFromURL(u)
		}
	}
	return Identity{}, errNoSPIFFEID
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n, nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return sum[:20]
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func parseCert(pemBytes []byte) (*x509.Certificate, error) {
	certs, err := parseCerts(pemBytes)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("want exactly one PEM certificate, got %d", len(certs))
	}
	return certs[0], nil
}

// parseCerts parses every CERTIFICATE block of pemBytes.
func parseCerts(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, errors.New("trailing data that is not PEM")
			}
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func parseKey(pemBytes []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

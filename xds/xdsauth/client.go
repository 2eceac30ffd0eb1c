package xdsauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// JoinConfig configures a Joiner.
type JoinConfig struct {
	// XDSAddr is the controller's xDS address, host:port; its host must
	// be one of the names of the controller's certificate.
	XDSAddr string
	// CAFile holds the PEM bundle that verifies the controller, re-read
	// before each connection (a mounted ConfigMap follows a root
	// rotation). When empty, CAPEM is the bundle.
	CAFile string
	CAPEM  []byte
	// TokenFile holds the bearer token for first contact: the join token,
	// or a projected ServiceAccount token (re-read before each use).
	TokenFile string
	// Declared is who the node says it is; with the join token it becomes
	// bound. Its TrustDomain is ignored (the controller's).
	Declared Binding
	// TTL is the validity asked for; 0 lets the controller choose.
	TTL time.Duration
	// Logger receives the Joiner's logs; nil discards them.
	Logger *slog.Logger
}

// Joiner is a proxy's side of the locked control plane: it joins with a
// token, holds the node's client certificate, renews it at half its life
// (authenticated by the current one), joins again with the token once it
// has expired, and gives the TLS credentials to dial ADS with.
type Joiner struct {
	cfg JoinConfig
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate // nil until joined
	renewAt  time.Time        // half its life, counted from when it arrived
	notAfter time.Time
}

// NewJoiner checks cfg and returns a Joiner. The CA bundle is read
// before each connection; a missing or empty one fails that connection.
func NewJoiner(cfg JoinConfig) (*Joiner, error) {
	if cfg.CAFile == "" && len(cfg.CAPEM) == 0 {
		return nil, errors.New("xds: no CA bundle to verify the controller with (--xds-ca-file)")
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("xds: no token file to join with (--join-token-file)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Joiner{cfg: cfg, log: log, now: time.Now}, nil
}

// roots reads the CA bundle.
func (j *Joiner) roots() (*x509.CertPool, error) {
	pemBytes, src := j.cfg.CAPEM, "$GITMESH_XDS_CA"
	if j.cfg.CAFile != "" {
		var err error
		if pemBytes, err = os.ReadFile(j.cfg.CAFile); err != nil {
			return nil, fmt.Errorf("xds: reading the controller's CA bundle: %w", err)
		}
		src = j.cfg.CAFile
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("xds: reading the controller's CA bundle %s: no PEM certificate", src)
	}
	return pool, nil
}

// Credentials returns the transport credentials of the ADS connection:
// the controller verified against the CA bundle (read at each
// handshake) for the host dialled, the node's current certificate
// presented (none before Join).
func (j *Joiner) Credentials() credentials.TransportCredentials {
	return j.credentials(true)
}

// credentials verifies the server like crypto/tls would, against the
// bundle as it is now; withCert presents the current certificate.
func (j *Joiner) credentials(withCert bool) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below against the current bundle: crypto/tls takes
		// RootCAs once per Config.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots, err := j.roots()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("xds: the controller presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName})
			if err != nil {
				return fmt.Errorf("xds: verifying the controller: %w", err)
			}
			return nil
		},
	}
	if withCert {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := j.current(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		}
	}
	return credentials.NewTLS(cfg)
}

// Certificate returns the node's current certificate, nil before Join.
func (j *Joiner) Certificate() *x509.Certificate {
	if c := j.current(); c != nil {
		return c.Leaf
	}
	return nil
}

func (j *Joiner) current() *tls.Certificate {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cert
}

// Join gets a certificate with the token, retrying while the controller
// is unreachable (backoff from 100ms to 5s) until ctx is done. A refusal
// is returned at once: "xds: join refused: ...".
func (j *Joiner) Join(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := j.request(ctx, true)
		if err == nil || errors.Is(err, errRefused) || ctx.Err() != nil {
			return err
		}
		j.log.Warn("xds: joining failed; retrying", "xds_addr", j.cfg.XDSAddr, "error", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Run renews the certificate at half its life until ctx is done; once it
// has expired it joins with the token again. Failures are logged and
// retried with jittered backoff.
func (j *Joiner) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		j.mu.Lock()
		renewAt, joined := j.renewAt, j.cert != nil
		j.mu.Unlock()
		if joined {
			if wait := renewAt.Sub(j.now()); wait > 0 && !sleep(ctx, wait) {
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		j.mu.Lock()
		withToken := j.cert == nil || !j.now().Before(j.notAfter)
		j.mu.Unlock()
		if err := j.request(ctx, withToken); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := time.Duration(float64(backoff) * (0.8 + 0.4*mrand.Float64()))
			j.log.Error("xds: renewing the client certificate failed; retrying", "error", err, "with_token", withToken, "retry_in", wait)
			if !sleep(ctx, wait) {
				return nil
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// errRefused marks a refusal by the controller (not worth retrying as is).
var errRefused = errors.New("refused")

// request asks the controller for a certificate on a fresh connection,
// authenticated by the token or by the current certificate.
func (j *Joiner) request(ctx context.Context, withToken bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("xds: generating the node key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("xds: creating the certificate request: %w", err)
	}
	req := &securityv1alpha1.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		ValidityDuration: int64(j.cfg.TTL / time.Second),
	}
	what := "renewal"
	creds := j.Credentials()
	if withToken {
		what = "join"
		tok, err := ReadTokenFile(j.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("xds: join: %w", err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		req.Metadata = DeclaredMetadata(j.cfg.Declared)
		creds = j.credentials(false)
	}
	conn, err := grpc.NewClient(j.cfg.XDSAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("xds: %s: dialing %s: %w", what, j.cfg.XDSAddr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, req)
	if err != nil {
		if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied || c == codes.InvalidArgument {
			return fmt.Errorf("xds: %s %w: %s", what, errRefused, status.Convert(err).Message())
		}
		return fmt.Errorf("xds: %s: %w", what, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("xds: encoding the node key: %w", err)
	}
	tc, err := tls.X509KeyPair([]byte(strings.Join(resp.GetCertChain(), "")), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return fmt.Errorf("xds: %s: loading the issued certificate: %w", what, err)
	}
	now := j.now()
	j.mu.Lock()
	// The CA backdates NotBefore for clock skew: count the life from now.
	j.cert, j.notAfter, j.renewAt = &tc, tc.Leaf.NotAfter, now.Add(tc.Leaf.NotAfter.Sub(now)/2)
	j.mu.Unlock()
	j.log.Info("xds: got a client certificate", "how", what, "node_id", tc.Leaf.Subject.CommonName, "not_after", tc.Leaf.NotAfter)
	return nil
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

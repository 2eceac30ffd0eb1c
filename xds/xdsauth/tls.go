package xdsauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/ca"
)

// ServerTLS is the xDS server's side of TLS: a serving certificate from
// the CA for the server's names, reissued at half its life or after a
// root rotation, and client certificates verified, when given, against
// the CA's current trust bundle and trust domain.
type ServerTLS struct {
	authority Authorities
	leaf      ca.Leaf
	now       func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
	// signer is the root cert was last found signed by (Authority.Root's
	// pointer, new on every rotation), so that a handshake checks the
	// signature once per root rather than every time.
	signer *x509.Certificate
}

// NewServerTLS returns the TLS side of an xDS server known as hosts (DNS
// names or IPs) whose own identity is id.
func NewServerTLS(authority Authorities, id ca.Identity, hosts []string) *ServerTLS {
	l := ca.Leaf{ID: id, CommonName: "gitmesh xds"}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			l.IPs = append(l.IPs, ip)
		} else if h != "" {
			l.DNSNames = append(l.DNSNames, h)
		}
	}
	return &ServerTLS{authority: authority, leaf: l, now: time.Now}
}

// Config returns the server's tls.Config: each handshake reads the
// current certificate and trust bundle.
func (s *ServerTLS) Config() *tls.Config {
	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
		ClientAuth:       tls.VerifyClientCertIfGiven,
		VerifyConnection: s.verifyTrustDomain,
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.ClientCAs = s.authority.Authority().Pool()
			return c, nil
		},
	}
}

// verifyTrustDomain refuses a client certificate of another trust domain
// (the chain itself was verified against the bundle).
func (s *ServerTLS) verifyTrustDomain(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 {
		return nil
	}
	id, err := ca.IdentityOf(cs.VerifiedChains[0][0])
	if err != nil {
		return fmt.Errorf("xds client certificate: %w", err)
	}
	if id.TrustDomain != s.authority.Authority().TrustDomain() {
		return fmt.Errorf("xds client certificate: trust domain %q, want %q", id.TrustDomain, s.authority.Authority().TrustDomain())
	}
	return nil
}

// certificate returns the serving certificate, reissuing it when past
// half its life or not from the current root.
func (s *ServerTLS) certificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	auth := s.authority.Authority()
	if s.cert != nil && now.Before(s.renewAt) && s.issuedByRoot(auth) {
		return s.cert, nil
	}
	c, err := auth.Issue(s.leaf)
	if err != nil {
		return nil, fmt.Errorf("issuing the xds server certificate: %w", err)
	}
	tc, err := tls.X509KeyPair(c.ChainPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the xds server certificate: %w", err)
	}
	// The CA backdates NotBefore for clock skew: count the life from now.
	s.cert, s.renewAt, s.signer = &tc, now.Add(tc.Leaf.NotAfter.Sub(now)/2), nil
	return s.cert, nil
}

// issuedByRoot reports whether s.cert was signed by auth's signing root,
// checking the signature once per root. s.mu must be held.
func (s *ServerTLS) issuedByRoot(auth *ca.Authority) bool {
	root := auth.Root()
	if s.signer == root {
		return true
	}
	if !auth.IssuedByRoot(s.cert.Leaf) {
		return false
	}
	s.signer = root
	return true
}

// ServerHosts returns the names the xDS server's certificate carries for
// a listen address: its host, or every interface address when it listens
// on all of them; "localhost" and the loopback addresses; and extra
// (e.g. the Kubernetes Service's DNS names).
func ServerHosts(listenAddr string, extra []string) ([]string, error) {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, fmt.Errorf("naming the xds server: %w", err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("naming the xds server: listing interface addresses: %w", err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				hosts = append(hosts, n.IP.String())
			}
		}
	} else {
		hosts = append(hosts, host)
	}
	return append(hosts, extra...), nil
}

// LoopbackOnly reports whether a listen address accepts connections from
// this host only (a loopback IP or localhost).
func LoopbackOnly(listenAddr string) bool {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Auth modes of the xDS server (--xds-auth).
const (
	AuthRequired = "required"
	AuthNone     = "none"
)

// ResolveMode returns the xDS auth mode in force: mode when set, else
// AuthNone for a loopback-only listen address and AuthRequired otherwise.
func ResolveMode(mode, listenAddr string) (string, error) {
	switch mode {
	case AuthRequired, AuthNone:
		return mode, nil
	case "":
		if LoopbackOnly(listenAddr) {
			return AuthNone, nil
		}
		return AuthRequired, nil
	}
	return "", errors.New("--xds-auth: want required or none, got " + mode)
}

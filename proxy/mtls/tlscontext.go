package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/gitmesh/gitmesh/proxy/match"
)

// TLSContext is a built CommonTlsContext with the fields of its
// Downstream- or UpstreamTlsContext: what a handshake needs besides the
// secrets, which it reads from the proxy's secretStore when it starts.
// Immutable.
type TLSContext struct {
	// Certs are tls_certificates and tls_certificate_sds_secret_configs.
	Certs []CertSource
	// Validation checks the peer's certificate; nil accepts any (upstream)
	// or asks for none (downstream).
	Validation *ValidationConfig
	// ALPN is alpn_protocols, in preference order.
	ALPN []string
	// MinVersion and MaxVersion are tls_params' protocol versions as
	// crypto/tls constants (TLS 1.2 to 1.3 when unset, as in Envoy).
	MinVersion uint16
	MaxVersion uint16
	// Ciphers and Curves are tls_params' cipher_suites and ecdh_curves;
	// empty uses crypto/tls's defaults.
	Ciphers []uint16
	Curves  []tls.CurveID
	// SNI is the upstream server name ("" sends none).
	SNI string
	// RequireClientCert and requireSNI are downstream only.
	RequireClientCert bool
	RequireSNI        bool
}

// CertSource is one certificate: loaded from the configuration, or the
// SDS secret of that name.
type CertSource struct {
	// Static is an inline certificate; SDS names a secret otherwise.
	Static *tls.Certificate
	SDS    string
}

// ValidationConfig is a CertificateValidationContext, possibly combined
// with an SDS one (combined_validation_context): the trusted roots and
// the SAN matchers a peer certificate must pass.
type ValidationConfig struct {
	// Roots are the inline trusted_ca; nil when only RootsSDS supplies them.
	Roots *x509.CertPool
	// RootsSDS names the SDS secret whose validation_context supplies the
	// roots (and adds its SAN matchers); "" for none.
	RootsSDS string
	// SANs must match one of the peer's subject alternative names (any
	// of them); empty accepts every name.
	SANs []SANMatcher
}

// SANType restricts a SAN matcher to one kind of subject alternative
// name; sanAny is the deprecated match_subject_alt_names (any kind).
type SANType int

const (
	// The kinds of subject alternative names a matcher compares with.
	SANAny SANType = iota
	SANDNS
	SANURI
	SANEmail
	SANIP
)

// SANMatcher is one match_typed_subject_alt_names entry.
type SANMatcher struct {
	// Type is the kind of names Match is compared with.
	Type  SANType
	Match *match.StringMatch
	// ExactDNS is set for a DNS exact matcher: a wildcard SAN in the
	// certificate ("*.example.com") matches one label, as Envoy.
	ExactDNS string
}

// Handshake failure reasons, the suffixes of Envoy's ssl.* stats.
const (
	ReasonVerifyError  = "fail_verify_error"
	ReasonVerifySAN    = "fail_verify_san"
	ReasonVerifyNoCert = "fail_verify_no_cert"
	reasonConnError    = "connection_error"
	reasonNoSecret     = "secret_unavailable"
)

// verifyError is a peer certificate that failed verification.
type verifyError struct {
	reason string
	err    error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// errSecretUnavailable is a handshake that needs an SDS secret that has
// not arrived (a listener or cluster applied after the warming timeout).
var errSecretUnavailable = errors.New("SDS secret not available")

// HandshakeReason classifies a handshake error for the metrics.
func HandshakeReason(err error) string {
	var ve *verifyError
	switch {
	case errors.As(err, &ve):
		return ve.reason
	case errors.Is(err, errSecretUnavailable):
		return reasonNoSecret
	case strings.Contains(err.Error(), "didn't provide a certificate"), strings.Contains(err.Error(), "certificate required"):
		return ReasonVerifyNoCert
	}
	return reasonConnError
}

// Matches reports whether one of the certificate's SANs of the matcher's
// kind matches.
func (sm SANMatcher) Matches(c *x509.Certificate) bool {
	if sm.Type == SANAny || sm.Type == SANDNS {
		for _, n := range c.DNSNames {
			if sm.Match.Matches(n) || (sm.ExactDNS != "" && dnsWildcardMatch(sm.ExactDNS, n)) {
				return true
			}
		}
	}
	if sm.Type == SANAny || sm.Type == SANURI {
		for _, u := range c.URIs {
			if sm.Match.Matches(u.String()) {
				return true
			}
		}
	}
	if sm.Type == SANAny || sm.Type == SANEmail {
		for _, e := range c.EmailAddresses {
			if sm.Match.Matches(e) {
				return true
			}
		}
	}
	if sm.Type == SANAny || sm.Type == SANIP {
		for _, ip := range c.IPAddresses {
			if sm.Match.Matches(ip.String()) {
				return true
			}
		}
	}
	return false
}

// dnsWildcardMatch matches a DNS name against a certificate SAN that may
// be a wildcard: "*.example.com" matches "a.example.com", not
// "a.b.example.com" (Envoy's dnsNameMatch).
func dnsWildcardMatch(name, san string) bool {
	if !strings.HasPrefix(san, "*.") {
		return false
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && strings.EqualFold(name[i:], san[1:])
}

// resolve returns the roots and SAN matchers in force now: those of the
// SDS validation secret, when the context names one, plus its own.
func (v *ValidationConfig) resolve(store *SecretStore) (*x509.CertPool, []SANMatcher, error) {
	if v.RootsSDS == "" {
		return v.Roots, v.SANs, nil
	}
	sv := store.get(v.RootsSDS)
	if sv == nil || sv.Validation == nil {
		return nil, nil, fmt.Errorf("validation context %q: %w", v.RootsSDS, errSecretUnavailable)
	}
	roots := sv.Validation.Roots
	if roots == nil {
		roots = v.Roots
	}
	return roots, append(slices.Clip(v.SANs), sv.Validation.SANs...), nil
}

// VerifyPeer verifies a peer's chain (leaf first, as crypto/tls parsed it)
// against roots (no host name check, as Envoy without SAN matchers) and,
// when there are matchers, that one of them matches the leaf.
func VerifyPeer(certs []*x509.Certificate, roots *x509.CertPool, sans []SANMatcher) error {
	if len(certs) == 0 {
		return &verifyError{reason: ReasonVerifyNoCert, err: errors.New("peer presented no certificate")}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if roots == nil {
		opts.Roots = x509.NewCertPool()
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &verifyError{reason: ReasonVerifyError, err: err}
	}
	if len(sans) == 0 {
		return nil
	}
	for _, sm := range sans {
		if sm.Matches(certs[0]) {
			return nil
		}
	}
	var got []string
	for _, u := range certs[0].URIs {
		got = append(got, u.String())
	}
	got = append(got, certs[0].DNSNames...)
	return &verifyError{reason: ReasonVerifySAN, err: fmt.Errorf("SAN mismatch: peer certificate SANs %v match no configured subject alt name", got)}
}

// certificates returns the context's certificates as they are now.
func (tc *TLSContext) certificates(store *SecretStore) ([]tls.Certificate, error) {
	out := make([]tls.Certificate, 0, len(tc.Certs))
	for _, c := range tc.Certs {
		if c.Static != nil {
			out = append(out, *c.Static)
			continue
		}
		sv := store.get(c.SDS)
		if sv == nil || sv.Cert == nil {
			return nil, fmt.Errorf("certificate %q: %w", c.SDS, errSecretUnavailable)
		}
		out = append(out, *sv.Cert)
	}
	return out, nil
}

// LocalLeaf returns the context's first certificate as it is now; nil
// when it has none or its secret has not arrived.
func (tc *TLSContext) LocalLeaf(store *SecretStore) *x509.Certificate {
	if tc == nil || len(tc.Certs) == 0 {
		return nil
	}
	if c := tc.Certs[0]; c.Static != nil {
		return c.Static.Leaf
	} else if sv := store.get(c.SDS); sv != nil && sv.Cert != nil {
		return sv.Cert.Leaf
	}
	return nil
}

// LocalURIs returns the URI SANs of the context's first certificate as it
// is now (XFCC's By).
func (tc *TLSContext) LocalURIs(store *SecretStore) []string {
	leaf := tc.LocalLeaf(store)
	if leaf == nil {
		return nil
	}
	out := make([]string, 0, len(leaf.URIs))
	for _, u := range leaf.URIs {
		out = append(out, u.String())
	}
	return out
}

// ServerConfig returns the tls.Config of one downstream connection: the
// certificates, roots and ALPN are chosen when its ClientHello arrives,
// from the secrets in force then.
func (tc *TLSContext) ServerConfig(store *SecretStore) *tls.Config {
	return &tls.Config{
		SessionTicketsDisabled: true,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return tc.serverConfigFor(hello, store)
		},
	}
}

func (tc *TLSContext) serverConfigFor(hello *tls.ClientHelloInfo, store *SecretStore) (*tls.Config, error) {
	if tc.RequireSNI && hello.ServerName == "" {
		return nil, errors.New("client sent no SNI")
	}
	certs, err := tc.certificates(store)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates:           certs,
		MinVersion:             tc.MinVersion,
		MaxVersion:             tc.MaxVersion,
		CipherSuites:           tc.Ciphers,
		CurvePreferences:       tc.Curves,
		SessionTicketsDisabled: true,
		NextProtos:             negotiateALPN(tc.ALPN, hello.SupportedProtos),
	}
	if v := tc.Validation; v != nil {
		roots, sans, err := v.resolve(store)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequestClientCert
		if tc.RequireClientCert {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		// VerifyConnection, not VerifyPeerCertificate: crypto/tls has
		// parsed the chain already.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && !tc.RequireClientCert {
				return nil
			}
			return VerifyPeer(cs.PeerCertificates, roots, sans)
		}
	}
	return cfg, nil
}

// negotiateALPN picks the protocol the server answers with: the first of
// its own the client offers. Without one in common the handshake goes on
// without ALPN, as BoringSSL does (Go's server would abort it), so a
// client offering only Istio's "istio" markers is served.
func negotiateALPN(server, client []string) []string {
	for _, s := range server {
		if slices.Contains(client, s) {
			return []string{s}
		}
	}
	return nil
}

// ClientConfig returns the tls.Config of one upstream connection, with the
// secrets in force now. http2 offers "h2" first, so the peer speaks HTTP/2
// over TLS as the cluster asks.
func (tc *TLSContext) ClientConfig(store *SecretStore, http2 bool) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: tc.SNI,
		// Verification is verifyPeer's: Envoy checks no host name, only
		// the chain and the configured SAN matchers.
		InsecureSkipVerify: true,
		MinVersion:         tc.MinVersion,
		MaxVersion:         tc.MaxVersion,
		CipherSuites:       tc.Ciphers,
		CurvePreferences:   tc.Curves,
		NextProtos:         tc.ALPN,
	}
	if net.ParseIP(tc.SNI) != nil {
		cfg.ServerName = ""
	}
	if http2 && !slices.Contains(tc.ALPN, "h2") {
		cfg.NextProtos = append([]string{"h2"}, tc.ALPN...)
	}
	if len(tc.Certs) > 0 {
		certs, err := tc.certificates(store)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certs[0], nil
		}
	}
	if v := tc.Validation; v != nil {
		roots, sans, err := v.resolve(store)
		if err != nil {
			return nil, err
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return VerifyPeer(cs.PeerCertificates, roots, sans)
		}
	}
	return cfg, nil
}

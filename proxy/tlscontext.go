package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// tlsContext is a built CommonTlsContext with the fields of its
// Downstream- or UpstreamTlsContext: what a handshake needs besides the
// secrets, which it reads from the proxy's secretStore when it starts.
// Immutable.
type tlsContext struct {
	certs      []certSource
	validation *validationConfig
	alpn       []string
	minVersion uint16
	maxVersion uint16
	ciphers    []uint16
	curves     []tls.CurveID
	// sni is the upstream server name ("" sends none).
	sni string
	// requireClientCert and requireSNI are downstream only.
	requireClientCert bool
	requireSNI        bool
}

// certSource is one certificate: loaded from the configuration, or the
// SDS secret of that name.
type certSource struct {
	static *tls.Certificate
	sds    string
}

// validationConfig is a CertificateValidationContext, possibly combined
// with an SDS one (combined_validation_context): the trusted roots and
// the SAN matchers a peer certificate must pass.
type validationConfig struct {
	roots *x509.CertPool
	// rootsSDS names the SDS secret whose validation_context supplies the
	// roots (and adds its SAN matchers); "" for none.
	rootsSDS string
	sans     []sanMatcher
}

// sanType restricts a SAN matcher to one kind of subject alternative
// name; sanAny is the deprecated match_subject_alt_names (any kind).
type sanType int

const (
	sanAny sanType = iota
	sanDNS
	sanURI
	sanEmail
	sanIP
)

// sanMatcher is one match_typed_subject_alt_names entry.
type sanMatcher struct {
	typ sanType
	m   *stringMatch
	// exactDNS is set for a DNS exact matcher: a wildcard SAN in the
	// certificate ("*.example.com") matches one label, as Envoy.
	exactDNS string
}

// Handshake failure reasons, the suffixes of Envoy's ssl.* stats.
const (
	reasonVerifyError  = "fail_verify_error"
	reasonVerifySAN    = "fail_verify_san"
	reasonVerifyNoCert = "fail_verify_no_cert"
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

// handshakeReason classifies a handshake error for the metrics.
func handshakeReason(err error) string {
	var ve *verifyError
	switch {
	case errors.As(err, &ve):
		return ve.reason
	case errors.Is(err, errSecretUnavailable):
		return reasonNoSecret
	case strings.Contains(err.Error(), "didn't provide a certificate"), strings.Contains(err.Error(), "certificate required"):
		return reasonVerifyNoCert
	}
	return reasonConnError
}

// buildCommonTLS builds a CommonTlsContext. Field paths in errors are
// relative to it.
func buildCommonTLS(ctx *tlsv3.CommonTlsContext) (*tlsContext, *fieldError) {
	if err := checkFields(ctx, "tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	tc := &tlsContext{minVersion: tls.VersionTLS12, maxVersion: tls.VersionTLS13, alpn: ctx.GetAlpnProtocols()}
	for i, c := range ctx.GetTlsCertificates() {
		cert, fe := buildCertificate(c)
		if fe != nil {
			fe.field = fmt.Sprintf(".tls_certificates[%d]%s", i, fe.field)
			return nil, fe
		}
		tc.certs = append(tc.certs, certSource{static: cert})
	}
	for i, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
		if fe := sdsConfigCheck(c); fe != nil {
			fe.field = fmt.Sprintf(".tls_certificate_sds_secret_configs[%d]%s", i, fe.field)
			return nil, fe
		}
		tc.certs = append(tc.certs, certSource{sds: c.GetName()})
	}
	if p := ctx.GetTlsParams(); p != nil {
		cfg := &tls.Config{MinVersion: tc.minVersion, MaxVersion: tc.maxVersion}
		if fe := applyTLSParams(cfg, p); fe != nil {
			fe.field = ".tls_params" + fe.field
			return nil, fe
		}
		tc.minVersion, tc.maxVersion, tc.ciphers, tc.curves = cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites, cfg.CurvePreferences
	}
	switch vc := ctx.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		v, fe := buildValidationContext(vc.ValidationContext)
		if fe != nil {
			fe.field = ".validation_context" + fe.field
			return nil, fe
		}
		tc.validation = v
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if fe := sdsConfigCheck(vc.ValidationContextSdsSecretConfig); fe != nil {
			fe.field = ".validation_context_sds_secret_config" + fe.field
			return nil, fe
		}
		tc.validation = &validationConfig{rootsSDS: vc.ValidationContextSdsSecretConfig.GetName()}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		field := ".combined_validation_context"
		cv := vc.CombinedValidationContext
		if err := checkFields(cv, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		v := &validationConfig{}
		if d := cv.GetDefaultValidationContext(); d != nil {
			var fe *fieldError
			if v, fe = buildValidationContext(d); fe != nil {
				fe.field = field + ".default_validation_context" + fe.field
				return nil, fe
			}
		}
		if fe := sdsConfigCheck(cv.GetValidationContextSdsSecretConfig()); fe != nil {
			fe.field = field + ".validation_context_sds_secret_config" + fe.field
			return nil, fe
		}
		v.rootsSDS = cv.GetValidationContextSdsSecretConfig().GetName()
		tc.validation = v
	default:
		return nil, fieldErr("", "validation context %T: %w", vc, errUnsupported)
	}
	if v := tc.validation; v != nil && v.roots == nil && v.rootsSDS == "" && len(v.sans) > 0 {
		// Envoy: "SAN-based verification of peer certificates without
		// trusted CA is insecure and not allowed".
		return nil, fieldErr(".validation_context", "SAN matchers need a trusted_ca")
	}
	return tc, nil
}

// buildValidationContext builds a CertificateValidationContext: trusted_ca
// and SAN matchers.
func buildValidationContext(vc *tlsv3.CertificateValidationContext) (*validationConfig, *fieldError) {
	if err := checkFields(vc, "trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	v := &validationConfig{}
	if ca := vc.GetTrustedCa(); ca != nil {
		pem, err := readDataSource(ca)
		if err != nil {
			return nil, fieldErr(".trusted_ca", "%w", err)
		}
		v.roots = x509.NewCertPool()
		if !v.roots.AppendCertsFromPEM(pem) {
			return nil, fieldErr(".trusted_ca", "no PEM certificates")
		}
	}
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		field := fmt.Sprintf(".match_typed_subject_alt_names[%d]", i)
		if err := checkFields(m, "san_type", "matcher"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		var typ sanType
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS:
			typ = sanDNS
		case tlsv3.SubjectAltNameMatcher_URI:
			typ = sanURI
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			typ = sanEmail
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			typ = sanIP
		default:
			return nil, fieldErr(field+".san_type", "%s: %w", m.GetSanType(), errUnsupported)
		}
		sm, fe := buildSANMatcher(typ, m.GetMatcher())
		if fe != nil {
			fe.field = field + ".matcher" + fe.field
			return nil, fe
		}
		v.sans = append(v.sans, sm)
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		sm, fe := buildSANMatcher(sanAny, m)
		if fe != nil {
			fe.field = fmt.Sprintf(".match_subject_alt_names[%d]%s", i, fe.field)
			return nil, fe
		}
		v.sans = append(v.sans, sm)
	}
	return v, nil
}

func buildSANMatcher(typ sanType, m *matcherv3.StringMatcher) (sanMatcher, *fieldError) {
	if m == nil {
		return sanMatcher{}, fieldErr("", "missing")
	}
	str, err := buildStringMatch(m)
	if err != nil {
		return sanMatcher{}, fieldErr("", "%w", err)
	}
	sm := sanMatcher{typ: typ, m: str}
	if e, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && (typ == sanDNS || typ == sanAny) {
		sm.exactDNS = e.Exact
	}
	return sm, nil
}

// matches reports whether one of the certificate's SANs of the matcher's
// kind matches.
func (sm sanMatcher) matches(c *x509.Certificate) bool {
	if sm.typ == sanAny || sm.typ == sanDNS {
		for _, n := range c.DNSNames {
			if sm.m.matches(n) || (sm.exactDNS != "" && dnsWildcardMatch(sm.exactDNS, n)) {
				return true
			}
		}
	}
	if sm.typ == sanAny || sm.typ == sanURI {
		for _, u := range c.URIs {
			if sm.m.matches(u.String()) {
				return true
			}
		}
	}
	if sm.typ == sanAny || sm.typ == sanEmail {
		for _, e := range c.EmailAddresses {
			if sm.m.matches(e) {
				return true
			}
		}
	}
	if sm.typ == sanAny || sm.typ == sanIP {
		for _, ip := range c.IPAddresses {
			if sm.m.matches(ip.String()) {
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
func (v *validationConfig) resolve(store *secretStore) (*x509.CertPool, []sanMatcher, error) {
	if v.rootsSDS == "" {
		return v.roots, v.sans, nil
	}
	sv := store.get(v.rootsSDS)
	if sv == nil || sv.validation == nil {
		return nil, nil, fmt.Errorf("validation context %q: %w", v.rootsSDS, errSecretUnavailable)
	}
	roots := sv.validation.roots
	if roots == nil {
		roots = v.roots
	}
	return roots, append(slices.Clip(v.sans), sv.validation.sans...), nil
}

// verifyPeer verifies a peer's chain (leaf first, as crypto/tls parsed it)
// against roots (no host name check, as Envoy without SAN matchers) and,
// when there are matchers, that one of them matches the leaf.
func verifyPeer(certs []*x509.Certificate, roots *x509.CertPool, sans []sanMatcher) error {
	if len(certs) == 0 {
		return &verifyError{reason: reasonVerifyNoCert, err: errors.New("peer presented no certificate")}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if roots == nil {
		opts.Roots = x509.NewCertPool()
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &verifyError{reason: reasonVerifyError, err: err}
	}
	if len(sans) == 0 {
		return nil
	}
	for _, sm := range sans {
		if sm.matches(certs[0]) {
			return nil
		}
	}
	var got []string
	for _, u := range certs[0].URIs {
		got = append(got, u.String())
	}
	got = append(got, certs[0].DNSNames...)
	return &verifyError{reason: reasonVerifySAN, err: fmt.Errorf("SAN mismatch: peer certificate SANs %v match no configured subject alt name", got)}
}

// certificates returns the context's certificates as they are now.
func (tc *tlsContext) certificates(store *secretStore) ([]tls.Certificate, error) {
	out := make([]tls.Certificate, 0, len(tc.certs))
	for _, c := range tc.certs {
		if c.static != nil {
			out = append(out, *c.static)
			continue
		}
		sv := store.get(c.sds)
		if sv == nil || sv.cert == nil {
			return nil, fmt.Errorf("certificate %q: %w", c.sds, errSecretUnavailable)
		}
		out = append(out, *sv.cert)
	}
	return out, nil
}

// localLeaf returns the context's first certificate as it is now; nil
// when it has none or its secret has not arrived.
func (tc *tlsContext) localLeaf(store *secretStore) *x509.Certificate {
	if tc == nil || len(tc.certs) == 0 {
		return nil
	}
	if c := tc.certs[0]; c.static != nil {
		return c.static.Leaf
	} else if sv := store.get(c.sds); sv != nil && sv.cert != nil {
		return sv.cert.Leaf
	}
	return nil
}

// localURIs returns the URI SANs of the context's first certificate as it
// is now (XFCC's By).
func (tc *tlsContext) localURIs(store *secretStore) []string {
	leaf := tc.localLeaf(store)
	if leaf == nil {
		return nil
	}
	out := make([]string, 0, len(leaf.URIs))
	for _, u := range leaf.URIs {
		out = append(out, u.String())
	}
	return out
}

// serverConfig returns the tls.Config of one downstream connection: the
// certificates, roots and ALPN are chosen when its ClientHello arrives,
// from the secrets in force then.
func (tc *tlsContext) serverConfig(store *secretStore) *tls.Config {
	return &tls.Config{
		SessionTicketsDisabled: true,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return tc.serverConfigFor(hello, store)
		},
	}
}

func (tc *tlsContext) serverConfigFor(hello *tls.ClientHelloInfo, store *secretStore) (*tls.Config, error) {
	if tc.requireSNI && hello.ServerName == "" {
		return nil, errors.New("client sent no SNI")
	}
	certs, err := tc.certificates(store)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates:           certs,
		MinVersion:             tc.minVersion,
		MaxVersion:             tc.maxVersion,
		CipherSuites:           tc.ciphers,
		CurvePreferences:       tc.curves,
		SessionTicketsDisabled: true,
		NextProtos:             negotiateALPN(tc.alpn, hello.SupportedProtos),
	}
	if v := tc.validation; v != nil {
		roots, sans, err := v.resolve(store)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequestClientCert
		if tc.requireClientCert {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		// VerifyConnection, not VerifyPeerCertificate: crypto/tls has
		// parsed the chain already.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && !tc.requireClientCert {
				return nil
			}
			return verifyPeer(cs.PeerCertificates, roots, sans)
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

// clientConfig returns the tls.Config of one upstream connection, with the
// secrets in force now. http2 offers "h2" first, so the peer speaks HTTP/2
// over TLS as the cluster asks.
func (tc *tlsContext) clientConfig(store *secretStore, http2 bool) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: tc.sni,
		// Verification is verifyPeer's: Envoy checks no host name, only
		// the chain and the configured SAN matchers.
		InsecureSkipVerify: true,
		MinVersion:         tc.minVersion,
		MaxVersion:         tc.maxVersion,
		CipherSuites:       tc.ciphers,
		CurvePreferences:   tc.curves,
		NextProtos:         tc.alpn,
	}
	if net.ParseIP(tc.sni) != nil {
		cfg.ServerName = ""
	}
	if http2 && !slices.Contains(tc.alpn, "h2") {
		cfg.NextProtos = append([]string{"h2"}, tc.alpn...)
	}
	if len(tc.certs) > 0 {
		certs, err := tc.certificates(store)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certs[0], nil
		}
	}
	if v := tc.validation; v != nil {
		roots, sans, err := v.resolve(store)
		if err != nil {
			return nil, err
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, roots, sans)
		}
	}
	return cfg, nil
}

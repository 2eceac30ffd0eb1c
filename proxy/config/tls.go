package config

import (
	"crypto/tls"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

// TLSTransportSocket is the transport socket name of Envoy's TLS.
const TLSTransportSocket = "envoy.transport_sockets.tls"

// buildDownstreamTLS turns a filter chain's transport_socket (a
// DownstreamTlsContext) into a tlsContext. Certificates and roots come
// inline, from files read when the configuration is built, or from SDS
// secrets read at each handshake.
func buildDownstreamTLS(ts *corev3.TransportSocket) (*mtls.TLSContext, *fieldError) {
	if ts.GetName() != TLSTransportSocket {
		return nil, fieldErr(".name", "transport socket %q: %w", ts.GetName(), ErrUnsupported)
	}
	if ts.GetTypedConfig() == nil {
		return nil, fieldErr(".typed_config", "missing")
	}
	d := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(d); err != nil {
		return nil, fieldErr(".typed_config", "decoding DownstreamTlsContext: %w", err)
	}
	const base = ".typed_config"
	if err := checkFields(d, "common_tls_context", "require_client_certificate", "require_sni"); err != nil {
		return nil, fieldErr(base, "%w", err)
	}
	tc, fe := buildCommonTLS(d.GetCommonTlsContext())
	if fe != nil {
		fe.Field = base + ".common_tls_context" + fe.Field
		return nil, fe
	}
	if len(tc.Certs) == 0 {
		return nil, fieldErr(base+".common_tls_context.tls_certificates", "a server certificate is required")
	}
	if d.GetRequireClientCertificate().GetValue() {
		if tc.Validation == nil {
			return nil, fieldErr(base+".require_client_certificate", "needs a validation context (trusted_ca or an SDS validation secret)")
		}
		tc.RequireClientCert = true
	}
	tc.RequireSNI = d.GetRequireSni().GetValue()
	return tc, nil
}

// RawBufferTransportSocket is Envoy's plaintext transport socket.
const RawBufferTransportSocket = "envoy.transport_sockets.raw_buffer"

// buildUpstreamTLS turns a cluster's transport_socket (an
// UpstreamTlsContext, or raw_buffer: nil) into a tlsContext.
func buildUpstreamTLS(ts *corev3.TransportSocket) (*mtls.TLSContext, *fieldError) {
	if ts.GetName() == RawBufferTransportSocket {
		if tc := ts.GetTypedConfig(); tc != nil && !tc.MessageIs(&rawbufferv3.RawBuffer{}) {
			return nil, fieldErr(".typed_config", "want RawBuffer, got %s", tc.GetTypeUrl())
		}
		return nil, nil
	}
	if ts.GetName() != TLSTransportSocket {
		return nil, fieldErr(".name", "transport socket %q: %w", ts.GetName(), ErrUnsupported)
	}
	if ts.GetTypedConfig() == nil {
		return nil, fieldErr(".typed_config", "missing")
	}
	u := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(u); err != nil {
		return nil, fieldErr(".typed_config", "decoding UpstreamTlsContext: %w", err)
	}
	const base = ".typed_config"
	// max_session_keys only sizes Envoy's session cache; the proxy does not
	// resume sessions.
	if err := checkFields(u, "common_tls_context", "sni", "max_session_keys"); err != nil {
		return nil, fieldErr(base, "%w", err)
	}
	tc, fe := buildCommonTLS(u.GetCommonTlsContext())
	if fe != nil {
		fe.Field = base + ".common_tls_context" + fe.Field
		return nil, fe
	}
	if len(tc.Certs) > 1 {
		return nil, fieldErr(base+".common_tls_context", "an upstream context takes at most one certificate")
	}
	tc.SNI = u.GetSni()
	return tc, nil
}

var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: tls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: tls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

// opensslCiphers maps Envoy's (BoringSSL) cipher suite names to Go's.
var opensslCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

var ecdhCurves = map[string]tls.CurveID{
	"X25519": tls.X25519, "P-256": tls.CurveP256, "P-384": tls.CurveP384, "P-521": tls.CurveP521,
}

func applyTLSParams(cfg *tls.Config, p *tlsv3.TlsParameters) *fieldError {
	if err := checkFields(p, "tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"); err != nil {
		return fieldErr("", "%w", err)
	}
	if v := p.GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		cfg.MinVersion = tlsVersions[v]
	}
	if v := p.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		cfg.MaxVersion = tlsVersions[v]
	}
	if cfg.MinVersion == 0 || cfg.MaxVersion == 0 || cfg.MinVersion > cfg.MaxVersion {
		return fieldErr(".tls_minimum_protocol_version", "invalid protocol version range")
	}
	for i, name := range p.GetCipherSuites() {
		// BoringSSL equal-preference groups: "[A|B]".
		for _, n := range strings.Split(strings.Trim(name, "[]"), "|") {
			id, ok := opensslCiphers[n]
			if !ok {
				return fieldErr(fmt.Sprintf(".cipher_suites[%d]", i), "%q: %w", n, ErrUnsupported)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	for i, name := range p.GetEcdhCurves() {
		id, ok := ecdhCurves[name]
		if !ok {
			return fieldErr(fmt.Sprintf(".ecdh_curves[%d]", i), "%q: %w", name, ErrUnsupported)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	return nil
}

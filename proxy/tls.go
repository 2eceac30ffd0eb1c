package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// tlsTransportSocket is the transport socket name of Envoy's TLS.
const tlsTransportSocket = "envoy.transport_sockets.tls"

// buildDownstreamTLS turns a filter chain's transport_socket (a
// DownstreamTlsContext) into a server tls.Config. Certificates come inline
// or from files read when the configuration is built; SDS is not supported
// yet.
func buildDownstreamTLS(ts *corev3.TransportSocket) (*tls.Config, *fieldError) {
	if ts.GetName() != tlsTransportSocket {
		return nil, fieldErr(".name", "transport socket %q: %w", ts.GetName(), errUnsupported)
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
	ctx := d.GetCommonTlsContext()
	if err := checkFields(ctx, "tls_params", "tls_certificates", "validation_context", "alpn_protocols"); err != nil {
		if len(ctx.GetTlsCertificateSdsSecretConfigs()) > 0 || ctx.GetValidationContextSdsSecretConfig() != nil || ctx.GetCombinedValidationContext() != nil {
			return nil, fieldErr(base+".common_tls_context", "SDS secrets: %w", errUnsupported)
		}
		return nil, fieldErr(base+".common_tls_context", "%w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, NextProtos: ctx.GetAlpnProtocols()}
	if len(ctx.GetTlsCertificates()) == 0 {
		return nil, fieldErr(base+".common_tls_context.tls_certificates", "a server certificate is required")
	}
	for i, c := range ctx.GetTlsCertificates() {
		field := fmt.Sprintf("%s.common_tls_context.tls_certificates[%d]", base, i)
		if err := checkFields(c, "certificate_chain", "private_key"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		chain, err := readDataSource(c.GetCertificateChain())
		if err != nil {
			return nil, fieldErr(field+".certificate_chain", "%w", err)
		}
		key, err := readDataSource(c.GetPrivateKey())
		if err != nil {
			return nil, fieldErr(field+".private_key", "%w", err)
		}
		pair, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fieldErr(field, "loading key pair: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	if p := ctx.GetTlsParams(); p != nil {
		if fe := applyTLSParams(cfg, p); fe != nil {
			fe.field = base + ".common_tls_context.tls_params" + fe.field
			return nil, fe
		}
	}
	if vc := ctx.GetValidationContext(); vc != nil {
		field := base + ".common_tls_context.validation_context"
		if err := checkFields(vc, "trusted_ca"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		pem, err := readDataSource(vc.GetTrustedCa())
		if err != nil {
			return nil, fieldErr(field+".trusted_ca", "%w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fieldErr(field+".trusted_ca", "no PEM certificates")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if d.GetRequireClientCertificate().GetValue() {
		if cfg.ClientCAs == nil {
			return nil, fieldErr(base+".require_client_certificate", "needs common_tls_context.validation_context.trusted_ca")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if d.GetRequireSni().GetValue() {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if hello.ServerName == "" {
				return nil, errors.New("client sent no SNI")
			}
			return nil, nil
		}
	}
	return cfg, nil
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
				return fieldErr(fmt.Sprintf(".cipher_suites[%d]", i), "%q: %w", n, errUnsupported)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	for i, name := range p.GetEcdhCurves() {
		id, ok := ecdhCurves[name]
		if !ok {
			return fieldErr(fmt.Sprintf(".ecdh_curves[%d]", i), "%q: %w", name, errUnsupported)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	return nil
}

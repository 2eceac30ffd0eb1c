package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

// buildCommonTLS builds a CommonTlsContext. Field paths in errors are
// relative to it.
func buildCommonTLS(ctx *tlsv3.CommonTlsContext) (*mtls.TLSContext, *fieldError) {
	if err := checkFields(ctx, "tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	tc := &mtls.TLSContext{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, ALPN: ctx.GetAlpnProtocols()}
	for i, c := range ctx.GetTlsCertificates() {
		cert, fe := buildCertificate(c)
		if fe != nil {
			fe.Field = fmt.Sprintf(".tls_certificates[%d]%s", i, fe.Field)
			return nil, fe
		}
		tc.Certs = append(tc.Certs, mtls.CertSource{Static: cert})
	}
	for i, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
		if fe := sdsConfigCheck(c); fe != nil {
			fe.Field = fmt.Sprintf(".tls_certificate_sds_secret_configs[%d]%s", i, fe.Field)
			return nil, fe
		}
		tc.Certs = append(tc.Certs, mtls.CertSource{SDS: c.GetName()})
	}
	if p := ctx.GetTlsParams(); p != nil {
		cfg := &tls.Config{MinVersion: tc.MinVersion, MaxVersion: tc.MaxVersion}
		if fe := applyTLSParams(cfg, p); fe != nil {
			fe.Field = ".tls_params" + fe.Field
			return nil, fe
		}
		tc.MinVersion, tc.MaxVersion, tc.Ciphers, tc.Curves = cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites, cfg.CurvePreferences
	}
	switch vc := ctx.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		v, fe := BuildValidationContext(vc.ValidationContext)
		if fe != nil {
			fe.Field = ".validation_context" + fe.Field
			return nil, fe
		}
		tc.Validation = v
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if fe := sdsConfigCheck(vc.ValidationContextSdsSecretConfig); fe != nil {
			fe.Field = ".validation_context_sds_secret_config" + fe.Field
			return nil, fe
		}
		tc.Validation = &mtls.ValidationConfig{RootsSDS: vc.ValidationContextSdsSecretConfig.GetName()}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		field := ".combined_validation_context"
		cv := vc.CombinedValidationContext
		if err := checkFields(cv, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		v := &mtls.ValidationConfig{}
		if d := cv.GetDefaultValidationContext(); d != nil {
			var fe *fieldError
			if v, fe = BuildValidationContext(d); fe != nil {
				fe.Field = field + ".default_validation_context" + fe.Field
				return nil, fe
			}
		}
		if fe := sdsConfigCheck(cv.GetValidationContextSdsSecretConfig()); fe != nil {
			fe.Field = field + ".validation_context_sds_secret_config" + fe.Field
			return nil, fe
		}
		v.RootsSDS = cv.GetValidationContextSdsSecretConfig().GetName()
		tc.Validation = v
	default:
		return nil, fieldErr("", "validation context %T: %w", vc, ErrUnsupported)
	}
	if v := tc.Validation; v != nil && v.Roots == nil && v.RootsSDS == "" && len(v.SANs) > 0 {

		return nil, fieldErr(".validation_context", "SAN matchers need a trusted_ca")
	}
	return tc, nil
}

// BuildValidationContext builds a CertificateValidationContext: trusted_ca
// and SAN matchers.
func BuildValidationContext(vc *tlsv3.CertificateValidationContext) (*mtls.ValidationConfig, *fieldError) {
	if err := checkFields(vc, "trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	v := &mtls.ValidationConfig{}
	if ca := vc.GetTrustedCa(); ca != nil {
		pem, err := readDataSource(ca)
		if err != nil {
			return nil, fieldErr(".trusted_ca", "%w", err)
		}
		v.Roots = x509.NewCertPool()
		if !v.Roots.AppendCertsFromPEM(pem) {
			return nil, fieldErr(".trusted_ca", "no PEM certificates")
		}
	}
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		field := fmt.Sprintf(".match_typed_subject_alt_names[%d]", i)
		if err := checkFields(m, "san_type", "matcher"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		var typ mtls.SANType
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS:
			typ = mtls.SANDNS
		case tlsv3.SubjectAltNameMatcher_URI:
			typ = mtls.SANURI
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			typ = mtls.SANEmail
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			typ = mtls.SANIP
		default:
			return nil, fieldErr(field+".san_type", "%s: %w", m.GetSanType(), ErrUnsupported)
		}
		sm, fe := BuildSANMatcher(typ, m.GetMatcher())
		if fe != nil {
			fe.Field = field + ".matcher" + fe.Field
			return nil, fe
		}
		v.SANs = append(v.SANs, sm)
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		sm, fe := BuildSANMatcher(mtls.SANAny, m)
		if fe != nil {
			fe.Field = fmt.Sprintf(".match_subject_alt_names[%d]%s", i, fe.Field)
			return nil, fe
		}
		v.SANs = append(v.SANs, sm)
	}
	return v, nil
}

// BuildSANMatcher builds a SAN matcher of kind typ.
func BuildSANMatcher(typ mtls.SANType, m *matcherv3.StringMatcher) (mtls.SANMatcher, *fieldError) {
	if m == nil {
		return mtls.SANMatcher{}, fieldErr("", "missing")
	}
	str, err := buildStringMatch(m)
	if err != nil {
		return mtls.SANMatcher{}, fieldErr("", "%w", err)
	}
	sm := mtls.SANMatcher{Type: typ, Match: str}
	if e, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && (typ == mtls.SANDNS || typ == mtls.SANAny) {
		sm.ExactDNS = e.Exact
	}
	return sm, nil
}

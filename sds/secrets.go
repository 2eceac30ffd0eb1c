package sds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Secret names, as Istio's node agent names them and transport sockets
// reference them (SdsSecretConfig.name).
const (
	// SecretDefault is the workload certificate with its key.
	SecretDefault = "default"
	// SecretRoot is the bundle of trusted roots peers are validated with.
	SecretRoot = "ROOTCA"
)

// CertificateSecret returns the "default" secret: the PEM chain (leaf then
// its issuers) and the PEM private key, inline.
func CertificateSecret(chainPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: SecretDefault, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(chainPEM),
		PrivateKey:       inline(keyPEM),
	}}}
}

// RootSecret returns the "ROOTCA" secret: the PEM bundle of every trusted
// root (several during a root rotation), inline.
func RootSecret(bundlePEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: SecretRoot, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(bundlePEM),
	}}}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

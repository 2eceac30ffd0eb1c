package prototest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/structpb"
)

// SelfSigned returns a PEM certificate and key for names.
func SelfSigned(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// Inline is an inline_string DataSource holding b.
func Inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(b)}}
}

// CA is a root that issues workload certificates, as the controller's
// CA does (ECDSA P-256, URI SAN = SPIFFE id).
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA generates a root CA called name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{name}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// SPIFFEID is the SPIFFE id of a service account in the default namespace.
func SPIFFEID(sa string) string { return "spiffe://cluster.local/ns/default/sa/" + sa }

// Issue returns a PEM leaf for id (and DNS SANs dns), valid from
// notBefore to notAfter, and its PEM key.
func (ca *CA) Issue(t testing.TB, id string, notBefore, notAfter time.Time, dns ...string) (chain, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     dns,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if id != "" { // "": no URI SAN
		u, _ := url.Parse(id)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// Workload returns a valid certificate for id.
func (ca *CA) Workload(t testing.TB, id string) (chain, key []byte) {
	return ca.Issue(t, id, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
}

// KeyPair is a tls.Certificate for direct test clients.
func KeyPair(t testing.TB, chain, key []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CertSecret is an SDS tls_certificate secret named "default", as Istio's.
func CertSecret(chain, key []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}

// RootSecret is an SDS validation_context secret named "ROOTCA" trusting bundle.
func RootSecret(bundle ...[]byte) *tlsv3.Secret {
	var b []byte
	for _, p := range bundle {
		b = append(b, p...)
	}
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}},
	}}}
}

// SDSRef refers to the SDS secret name over ADS.
func SDSRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}}
}

// MeshValidation is the combined validation context of docs/xds-conventions.md ("mTLS"): SANs
// (URI exact) plus ROOTCA.
func MeshValidation(sans ...string) *tlsv3.CommonTlsContext_CombinedValidationContext {
	def := &tlsv3.CertificateValidationContext{}
	for _, s := range sans {
		def.MatchTypedSubjectAltNames = append(def.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		})
	}
	return &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
		DefaultValidationContext:         def,
		ValidationContextSdsSecretConfig: SDSRef("ROOTCA"),
	}}
}

// IstioMutual is the ISTIO_MUTUAL upstream transport socket of docs/xds-conventions.md.
func IstioMutual(t testing.TB, sni string, sans ...string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: Any(t, &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{SDSRef("default")},
			ValidationContextType:          MeshValidation(sans...),
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
		},
		Sni: sni,
	})}}
}

// AutoMTLS sets the auto-mTLS transport_socket_matches on c and marks
// its endpoints meshed (tlsMode istio) when meshed.
func AutoMTLS(t testing.TB, c *clusterv3.Cluster, meshed bool, sans ...string) {
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: MustStruct(map[string]any{"tlsMode": "istio"}), TransportSocket: IstioMutual(t, "outbound_.80_._."+c.GetName(), sans...)},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{
			Name: config.RawBufferTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: Any(t, &rawbufferv3.RawBuffer{})},
		}},
	}
	if !meshed {
		return
	}
	for _, lle := range c.GetLoadAssignment().GetEndpoints() {
		for _, lbe := range lle.GetLbEndpoints() {
			lbe.Metadata.FilterMetadata[upstream.TransportSocketMatchKey] = MustStruct(map[string]any{"tlsMode": "istio"})
		}
	}
}

// MustStruct converts m to a Struct, panicking when it does not convert.
func MustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

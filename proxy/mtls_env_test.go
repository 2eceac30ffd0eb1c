package proxy

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
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ---- a test CA and SPIFFE workload certificates ----

// testCA is a root that issues workload certificates, as the controller's
// CA does (ECDSA P-256, URI SAN = SPIFFE id).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
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
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// spiffeID is the SPIFFE id of a service account in the default namespace.
func spiffeID(sa string) string { return "spiffe://cluster.local/ns/default/sa/" + sa }

// issue returns a PEM leaf for id (and DNS SANs dns), valid from
// notBefore to notAfter, and its PEM key.
func (ca *testCA) issue(t testing.TB, id string, notBefore, notAfter time.Time, dns ...string) (chain, key []byte) {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// workload returns a valid certificate for id.
func (ca *testCA) workload(t testing.TB, id string) (chain, key []byte) {
	return ca.issue(t, id, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
}

// keyPair is a tls.Certificate for direct test clients.
func keyPair(t testing.TB, chain, key []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---- SDS secrets and transport sockets as docs/xds-conventions.md ("mTLS") writes them ----

func certSecret(chain, key []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}

func rootSecret(bundle ...[]byte) *tlsv3.Secret {
	var b []byte
	for _, p := range bundle {
		b = append(b, p...)
	}
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}},
	}}}
}

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}}
}

// meshValidation is the combined validation context of docs/xds-conventions.md ("mTLS"): SANs
// (URI exact) plus ROOTCA.
func meshValidation(sans ...string) *tlsv3.CommonTlsContext_CombinedValidationContext {
	def := &tlsv3.CertificateValidationContext{}
	for _, s := range sans {
		def.MatchTypedSubjectAltNames = append(def.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		})
	}
	return &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
		DefaultValidationContext:         def,
		ValidationContextSdsSecretConfig: sdsRef("ROOTCA"),
	}}
}

// istioMutual is the ISTIO_MUTUAL upstream transport socket of docs/xds-conventions.md.
func istioMutual(t testing.TB, sni string, sans ...string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("default")},
			ValidationContextType:          meshValidation(sans...),
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
		},
		Sni: sni,
	})}}
}

// autoMTLS sets the auto-mTLS transport_socket_matches on c and marks
// its endpoints meshed (tlsMode istio) when meshed.
func autoMTLS(t testing.TB, c *clusterv3.Cluster, meshed bool, sans ...string) {
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: mustStruct(map[string]any{"tlsMode": "istio"}), TransportSocket: istioMutual(t, "outbound_.80_._."+c.GetName(), sans...)},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{
			Name: config.RawBufferTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &rawbufferv3.RawBuffer{})},
		}},
	}
	if !meshed {
		return
	}
	for _, lle := range c.GetLoadAssignment().GetEndpoints() {
		for _, lbe := range lle.GetLbEndpoints() {
			lbe.Metadata.FilterMetadata[upstream.TransportSocketMatchKey] = mustStruct(map[string]any{"tlsMode": "istio"})
		}
	}
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// inboundListener is a sidecar's inbound listener for a PeerAuthentication
// mode (STRICT, PERMISSIVE, DISABLE) as docs/xds-conventions.md writes it, routing
// with RDS routeName.
func inboundListener(t testing.TB, addr, mode, routeName string) *listenerv3.Listener {
	hcm := func(tlsChain bool) *listenerv3.Filter {
		h := &hcmv3.HttpConnectionManager{
			StatPrefix: "inbound",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
				RouteConfigName: routeName,
			}},
			HttpFilters:              []*hcmv3.HttpFilter{{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}}},
			ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
		}
		if tlsChain {
			h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
			h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
		}
		return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, h)}}
	}
	tlsChain := &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters:          []*listenerv3.Filter{hcm(true)},
		TransportSocket: &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("default")},
				ValidationContextType:          meshValidation(),
				AlpnProtocols:                  []string{"h2", "http/1.1"},
			},
		})}},
	}
	plainChain := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcm(false)}}
	l := &listenerv3.Listener{
		Name:             "inbound",
		Address:          socketAddr(t, addr),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{
			TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{}),
		}}},
	}
	switch mode {
	case "STRICT":
		l.FilterChains = []*listenerv3.FilterChain{tlsChain}
	case "PERMISSIVE":
		plainChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
		l.FilterChains = []*listenerv3.FilterChain{tlsChain, plainChain}
	default:
		l.FilterChains = []*listenerv3.FilterChain{plainChain}
	}
	return l
}

package config_test

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestTransportSocketMatches(t *testing.T) {
	c := prototest.StaticCluster(t, "c", "svc", []string{"127.0.0.1:1"})
	prototest.AutoMTLS(t, c, false)
	s, fe := config.BuildClusterSockets(c)
	if fe != nil {
		t.Fatal(fe.Err)
	}
	st := func(m map[string]any) *structpb.Struct { return prototest.MustStruct(m) }
	tests := []struct {
		name    string
		md      *structpb.Struct
		wantTLS bool
	}{
		{"tlsMode istio", st(map[string]any{"tlsMode": "istio"}), true},
		{"extra fields still match", st(map[string]any{"tlsMode": "istio", "x": "y"}), true},
		{"other tlsMode falls to the empty match", st(map[string]any{"tlsMode": "disabled"}), false},
		{"no metadata", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.ForEndpoint(tt.md) != nil; got != tt.wantTLS {
				t.Errorf("TLS %v; want %v", got, tt.wantTLS)
			}
		})
	}
	t.Run("transport_socket is the fallback", func(t *testing.T) {
		c := prototest.StaticCluster(t, "c", "svc", []string{"127.0.0.1:1"})
		c.TransportSocket = prototest.IstioMutual(t, "sni")
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{Name: "plain", Match: st(map[string]any{"tlsMode": "none"}),
			TransportSocket: &corev3.TransportSocket{Name: config.RawBufferTransportSocket}}}
		s, fe := config.BuildClusterSockets(c)
		if fe != nil {
			t.Fatal(fe.Err)
		}
		if s.ForEndpoint(nil) == nil || s.ForEndpoint(st(map[string]any{"tlsMode": "none"})) != nil {
			t.Error("want TLS by default and plaintext for the matching endpoint")
		}
	})
}

func TestUpstreamTLSNACKs(t *testing.T) {
	upstream := func(u *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
		return &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: prototest.Any(t, u)}}
	}
	cert, key := prototest.SelfSigned(t, "a.example.com")
	tests := []struct {
		name string
		ts   *corev3.TransportSocket
		want string
	}{
		{"unknown transport socket", &corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}, `transport_socket.name: transport socket "envoy.transport_sockets.alts": not supported`},
		{"SAN matchers without roots", upstream(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}}},
			}},
		}}), `transport_socket.typed_config.common_tls_context.validation_context: SAN matchers need a trusted_ca`},
		{"two certificates", upstream(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: prototest.Inline(cert), PrivateKey: prototest.Inline(key)}, {CertificateChain: prototest.Inline(cert), PrivateKey: prototest.Inline(key)}},
		}}), `at most one certificate`},
		{"SDS outside ADS", upstream(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
		}}), `tls_certificate_sds_secret_configs[0].sds_config: only ads config sources are supported`},
		{"unknown field", upstream(&tlsv3.UpstreamTlsContext{Sni: "x", AllowRenegotiation: true}), `field allow_renegotiation: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := prototest.StaticCluster(t, "c", "svc", []string{"127.0.0.1:1"})
			c.TransportSocket = tt.ts
			_, _, err := config.BuildCluster(c, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

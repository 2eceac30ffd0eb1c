package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

func file(t testing.TB, name string, b []byte) *corev3.DataSource {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
}

func tlsSocket(t testing.TB, chain, key *corev3.DataSource, alpn ...string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: chain, PrivateKey: key}},
			AlpnProtocols:   alpn,
			TlsParams:       &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		},
	})}}
}

// hcmChain is a filter chain with an HCM using RDS routeName.
func hcmChain(t testing.TB, routeName string) *listenerv3.FilterChain {
	return hcmListener(t, "x", "127.0.0.1:1", routeName).GetFilterChains()[0]
}

func TestGatewayTLS(t *testing.T) {
	r := newRig(t, nodemeta.RoleGateway)
	certA, keyA := selfSigned(t, "a.example.com")
	certB, keyB := selfSigned(t, "b.example.com", "*.b.example.com")
	passBackend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "passthrough") }))
	t.Cleanup(passBackend.Close)
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)

	chainA := hcmChain(t, "https.443.a")
	chainA.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a.example.com"}}
	chainA.TransportSocket = tlsSocket(t, inline(certA), inline(keyA), "h2", "http/1.1")
	chainB := hcmChain(t, "https.443.b")
	chainB.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"b.example.com", "*.b.example.com"}}
	chainB.TransportSocket = tlsSocket(t, file(t, "b.crt", certB), file(t, "b.key", keyB))
	const passCluster = "outbound|443||pass.example.com"
	pass := &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"pass.example.com"}, TransportProtocol: "tls"},
		Filters: []*listenerv3.Filter{{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tcpproxyv3.TcpProxy{
			StatPrefix: "pass", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: passCluster},
		})}}},
	}
	https := &listenerv3.Listener{
		Name: "0.0.0.0_443", Address: socketAddr(t, httpsAddr),
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{})}}},
		FilterChains:    []*listenerv3.FilterChain{chainA, chainB, pass},
	}
	redirectVH := vhost("http", []string{"*"}, direct(prefixMatch("/"), "plain"))
	redirectVH.RequireTls = routev3.VirtualHost_ALL
	r.push(
		https, hcmListener(t, "0.0.0.0_80", httpAddr, "http.80"),
		routeConfig("https.443.a", vhost("a", []string{"a.example.com"}, direct(prefixMatch("/"), "route-a"))),
		routeConfig("https.443.b", vhost("b", []string{"*"}, direct(prefixMatch("/"), "route-b"))),
		routeConfig("http.80", redirectVH),
		staticCluster(t, passCluster, "pass.example.com", []string{passBackend.Listener.Addr().String()}),
	)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certA)
	roots.AppendCertsFromPEM(certB)
	roots.AddCert(passBackend.Certificate())
	tests := []struct {
		name      string
		sni       string
		h2        bool
		wantBody  string
		wantProto int
	}{
		{name: "SNI a, HTTP/2 over ALPN", sni: "a.example.com", h2: true, wantBody: "route-a", wantProto: 2},
		{name: "SNI b, certificate from files", sni: "b.example.com", wantBody: "route-b", wantProto: 1},
		{name: "SNI wildcard", sni: "x.b.example.com", wantBody: "route-b", wantProto: 1},
		{name: "TLS passthrough by SNI", sni: "pass.example.com", wantBody: "passthrough", wantProto: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{ServerName: tt.sni, RootCAs: roots},
				ForceAttemptHTTP2: tt.h2,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", httpsAddr)
				},
			}
			if tt.sni == "pass.example.com" {
				tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate
				tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, "tcp", httpsAddr)
					if err != nil {
						return nil, err
					}
					tc := tls.Client(c, &tls.Config{ServerName: "pass.example.com", RootCAs: roots, InsecureSkipVerify: true})
					return tc, tc.HandshakeContext(ctx)
				}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + tt.sni + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tt.wantBody || resp.ProtoMajor != tt.wantProto {
				t.Errorf("got %q over HTTP/%d; want %q over HTTP/%d", b, resp.ProtoMajor, tt.wantBody, tt.wantProto)
			}
			if tt.sni != "pass.example.com" {
				if cert := resp.TLS.PeerCertificates[0]; cert.VerifyHostname(tt.sni) != nil {
					t.Errorf("served certificate for %v to SNI %s", cert.DNSNames, tt.sni)
				}
			}
		})
	}
	t.Run("unknown SNI is refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "nope.example.com", InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Fatal("handshake succeeded for an SNI no chain matches")
		}
	})
	t.Run("require_tls redirects plaintext", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/path?q=1", nil)
		req.Host = "shop.example.com:80"
		resp, _ := r.do(req)
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://shop.example.com/path?q=1" {
			t.Errorf("status %d Location %q; want 301 to https://shop.example.com/path?q=1", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestTLSNACKs(t *testing.T) {
	r := newRig(t, nodemeta.RoleGateway)
	cert, key := selfSigned(t, "a.example.com")
	addr := freeAddr(t)
	sds := hcmChain(t, "r")
	sds.TransportSocket = &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "kubernetes://cred"}}},
	})}}
	badKey := hcmChain(t, "r")
	badKey.TransportSocket = tlsSocket(t, inline(cert), inline([]byte("not a key")))
	dupA, dupB := hcmChain(t, "r"), hcmChain(t, "r")
	dupA.TransportSocket, dupB.TransportSocket = tlsSocket(t, inline(cert), inline(key)), tlsSocket(t, inline(cert), inline(key))
	tests := []struct {
		name   string
		chains []*listenerv3.FilterChain
		want   string
	}{
		{"SDS outside ADS", []*listenerv3.FilterChain{sds}, `filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config: only ads config sources are supported`},
		{"bad key", []*listenerv3.FilterChain{badKey}, `filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key: loading key pair`},
		{"duplicate match", []*listenerv3.FilterChain{dupA, dupB}, `filter_chains[1].filter_chain_match: same match as filter_chains[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &listenerv3.Listener{Name: "gw", Address: socketAddr(t, addr), FilterChains: tt.chains}
			r.cp.set(t, r.node, snapshot(t, "bad-"+tt.name, l, routeConfig("r", vhost("v", []string{"*"}, direct(prefixMatch("/"), "x")))))
			r.cp.waitRequest(t, config.ListenerType, func(req *discoveryRequest) bool {
				return req.GetErrorDetail() != nil && strings.Contains(req.GetErrorDetail().GetMessage(), `Listener "gw": `+tt.want)
			})
		})
	}
}

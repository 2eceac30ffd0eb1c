package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// TestRBACPrincipalFromClientCertificate serves an mTLS listener whose
// ALLOW policy names one SPIFFE principal: the verified client
// certificate's URI SAN decides.
func TestRBACPrincipalFromClientCertificate(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	app := backend(t, "reviews")
	ca := newTestCA(t, "root")
	serverCert, serverKey := ca.Issue(t, "spiffe://cluster.local/ns/default/sa/reviews", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "reviews")
	addr := freeAddr(t)

	allow := rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
		"ns[default]-policy[reviews]-rule[0]": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idPrincipal("spiffe://cluster.local/ns/default/sa/sleep")))),
	})
	l := withHTTPFilters(t, hcmListener(t, "inbound", addr, "inbound"), typedHTTPFilter(config.RBACFilterName, anyOf(t, allow)))
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates:       []*tlsv3.TlsCertificate{{CertificateChain: inline(serverCert), PrivateKey: inline(serverKey)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.PEM)}},
		},
	})}}
	r.push(l, routeConfig("inbound", vhost("inbound", []string{"*"}, toCluster(prefixMatch("/"), "inbound|9080||"))),
		staticCluster(t, "inbound|9080||", "reviews.default.svc.cluster.local", []string{hostPort(app)}))

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		name string
		uri  string
		want int
	}{
		{"allowed principal", "spiffe://cluster.local/ns/default/sa/sleep", http.StatusOK},
		{"other principal", "spiffe://cluster.local/ns/default/sa/other", http.StatusForbidden},
		{"certificate without URI SAN", "", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM := ca.Issue(t, tt.uri, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "client")
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: roots, ServerName: "reviews", Certificates: []tls.Certificate{pair},
			}}}
			defer client.CloseIdleConnections()
			resp, err := client.Get("https://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d %q; want %d", resp.StatusCode, body, tt.want)
			}
		})
	}
}

package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

// svcHost is the service the client proxy calls.
const svcHost = "server.default.svc.cluster.local"

// meshPair is two sidecars on one in-test control plane: the client's
// outbound listener routes svcHost to the server's inbound listener
// (ISTIO_MUTUAL via transport_socket_matches), which routes to an app.
type meshPair struct {
	t        testing.TB
	cp       *controlPlane
	client   *runningProxy
	server   *runningProxy
	clientID string
	serverID string
	out, in  string
	app      *httptest.Server
	ca       *testCA
	version  int
	http     *http.Client
	// secrets per side, replaced by tests that rotate them.
	clientSecrets, serverSecrets []types.Resource
	// mode is the server's PeerAuthentication mode; meshed marks the
	// client's endpoint tlsMode istio.
	mode   string
	meshed bool
	// sans are the SANs the client requires of the server.
	sans []string
	// http2 makes the client's cluster HTTP/2 (h2 over TLS).
	http2 bool
}

func newMeshPair(t testing.TB, mode string) *meshPair {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "-")
	m := &meshPair{t: t, mode: mode, meshed: true, out: freeAddr(t), in: freeAddr(t), ca: newTestCA(t, "root-a"),
		clientID: "client-" + name, serverID: "server-" + name, sans: []string{spiffeID("server")}}
	m.cp = startControlPlane(t, "127.0.0.1:0", nil)
	m.app = echo(t, "app", nil)
	m.client = startProxy(t, m.cp.addr, nodemeta.Workload{ID: m.clientID, Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: m.out})
	m.server = startProxy(t, m.cp.addr, nodemeta.Workload{ID: m.serverID, Service: "server", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "server"}, Inbound: m.in})
	cc, ck := m.ca.Workload(t, spiffeID("client"))
	sc, sk := m.ca.Workload(t, spiffeID("server"))
	m.clientSecrets = []types.Resource{certSecret(cc, ck), rootSecret(m.ca.PEM)}
	m.serverSecrets = []types.Resource{certSecret(sc, sk), rootSecret(m.ca.PEM)}
	m.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(m.http.CloseIdleConnections)
	return m
}

func (m *meshPair) clientResources() []types.Resource {
	c := staticCluster(m.t, "outbound|80||"+svcHost, svcHost, []string{m.in})
	autoMTLS(m.t, c, m.meshed, m.sans...)
	if m.http2 {
		c.TypedExtensionProtocolOptions = edsCluster(m.t, "x", svcHost, "", true).TypedExtensionProtocolOptions
	}
	return append([]types.Resource{
		hcmListener(m.t, "outbound", m.out, "outbound"),
		routeConfig("outbound", vhost("server", []string{svcHost}, toCluster(prefixMatch("/"), c.GetName()))),
		c,
	}, m.clientSecrets...)
}

func (m *meshPair) serverResources() []types.Resource {
	return append([]types.Resource{
		inboundListener(m.t, m.in, m.mode, "inbound"),
		routeConfig("inbound", vhost("inbound", []string{"*"}, toCluster(prefixMatch("/"), "inbound|80||"))),
		staticCluster(m.t, "inbound|80||", svcHost, []string{hostPort(m.app)}),
	}, m.serverSecrets...)
}

// push sends both sides their resources and waits until both applied
// them (secrets included).
func (m *meshPair) push() {
	m.t.Helper()
	m.version++
	v := strconv.Itoa(m.version)
	m.cp.set(m.t, m.serverID, snapshot(m.t, v, m.serverResources()...))
	m.cp.set(m.t, m.clientID, snapshot(m.t, v, m.clientResources()...))
	for _, p := range []*runningProxy{m.server, m.client} {
		waitApplied(m.t, p, v)
	}
}

func waitApplied(t testing.TB, p *runningProxy, v string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		cfg := p.applied.Load()
		if cfg == nil {
			return fmt.Errorf("nothing applied")
		}
		for _, typ := range []string{config.ListenerType, config.ClusterType, config.RouteType, config.SecretType} {
			if got := cfg.Resources.Versions[typ]; got != v {
				return fmt.Errorf("%s version %q; want %q", config.KindName(typ), got, v)
			}
		}
		return nil
	})
}

// get sends a request through the client proxy.
func (m *meshPair) get() (*http.Response, string, error) {
	req, _ := http.NewRequest("GET", "http://"+m.out+"/x", nil)
	req.Host = svcHost
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func leafHash(t testing.TB, chain []byte) string {
	b, _ := pem.Decode(chain)
	if b == nil {
		t.Fatal("no PEM")
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

func TestMTLSBetweenProxies(t *testing.T) {
	m := newMeshPair(t, "PERMISSIVE")
	m.push()
	clientChain := m.clientSecrets[0].(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineBytes()

	t.Run("ISTIO_MUTUAL with XFCC", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+m.out+"/x", nil)
		req.Host = svcHost
		req.Header.Set("X-Forwarded-Client-Cert", "By=forged") // the client sidecar's HCM sanitizes it
		resp, err := m.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d; want 200", resp.StatusCode)
		}
		want := "By=" + spiffeID("server") + ";Hash=" + leafHash(t, clientChain) + `;Subject="";URI=` + spiffeID("client")
		if got := resp.Header.Get("X-Req-X-Forwarded-Client-Cert"); got != want {
			t.Errorf("app saw XFCC %q; want %q", got, want)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		eventually(t, 5*time.Second, func() error {
			lines := metricLinesOf(m.server, "istio_requests_total", `connection_security_policy="mutual_tls"`,
				`source_principal="`+spiffeID("client")+`"`, `destination_principal="`+spiffeID("server")+`"`)
			if len(lines) == 0 {
				return fmt.Errorf("no mutual_tls request on the server:\n%s", strings.Join(metricLinesOf(m.server, "istio_requests_total"), "\n"))
			}
			lines = metricLinesOf(m.client, "istio_requests_total", `reporter="source"`, `destination_principal="`+spiffeID("server")+`"`)
			if len(lines) == 0 {
				return fmt.Errorf("client did not report the server's principal:\n%s", strings.Join(metricLinesOf(m.client, "istio_requests_total"), "\n"))
			}
			return nil
		})
	})
	t.Run("PERMISSIVE serves plaintext and sanitizes XFCC", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+m.in+"/x", nil)
		req.Header.Set("X-Forwarded-Client-Cert", "By=forged")
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Req-X-Forwarded-Client-Cert") != "" {
			t.Errorf("plaintext: status %d XFCC %q; want 200 without XFCC", resp.StatusCode, resp.Header.Get("X-Req-X-Forwarded-Client-Cert"))
		}
		if lines := metricLinesOf(m.server, "istio_requests_total", `connection_security_policy="none"`); len(lines) == 0 {
			t.Error("no connection_security_policy=none request")
		}
	})
	t.Run("h2 over TLS", func(t *testing.T) {
		m.http2 = true
		defer func() { m.http2 = false }()
		m.push()
		if resp, _, err := m.get(); err != nil || resp.StatusCode != 200 {
			t.Fatalf("HTTP/2 cluster over mTLS: %v %v; want 200", resp, err)
		}
		chain, key := m.ca.Workload(t, spiffeID("sleep"))
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{keyPair(t, chain, key)}}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + m.in + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("inbound TLS chain spoke HTTP/%d to an h2 client; want 2", resp.ProtoMajor)
		}
	})
	t.Run("plaintext to an endpoint without tlsMode", func(t *testing.T) {
		m.meshed = false
		m.push()
		resp, _, err := m.get()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Req-X-Forwarded-Client-Cert") != "" {
			t.Fatalf("got %v, %v; want 200 over plaintext (no XFCC)", resp, err)
		}
		m.meshed = true
	})
}

// directGet sends one request straight to the server's inbound listener
// with TLS config cfg (nil: plaintext).
func directGet(addr string, cfg *tls.Config) (*http.Response, error) {
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}
	scheme := "http"
	if cfg != nil {
		scheme = "https"
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(scheme + "://" + addr + "/x")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestMTLSStrict(t *testing.T) {
	m := newMeshPair(t, "STRICT")
	m.push()
	if resp, _, err := m.get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("mTLS through the proxies: %v %v; want 200", resp, err)
	}
	foreign := newTestCA(t, "foreign")
	goodChain, goodKey := m.ca.Workload(t, spiffeID("sleep"))
	expChain, expKey := m.ca.Issue(t, spiffeID("sleep"), time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	forChain, forKey := foreign.Workload(t, spiffeID("sleep"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.ca.PEM)
	client := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: roots, InsecureSkipVerify: true, Certificates: certs}
	}
	tests := []struct {
		name       string
		cfg        *tls.Config
		wantOK     bool
		wantReason string
	}{
		{"plaintext is closed", nil, false, ""},
		{"no client certificate", client(), false, mtls.ReasonVerifyNoCert},
		{"expired certificate", client(keyPair(t, expChain, expKey)), false, mtls.ReasonVerifyError},
		{"foreign CA", client(keyPair(t, forChain, forKey)), false, mtls.ReasonVerifyError},
		{"valid certificate", client(keyPair(t, goodChain, goodKey)), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := directGet(m.in, tt.cfg)
			if tt.wantOK {
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("got %v, %v; want 200", resp, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got status %d; want the connection refused", resp.StatusCode)
			}
			if tt.wantReason != "" {
				eventually(t, 5*time.Second, func() error {
					if len(metricLinesOf(m.server, "gitmesh_proxy_tls_handshake_errors_total", `direction="downstream"`, `reason="`+tt.wantReason+`"`)) == 0 {
						return fmt.Errorf("no %s handshake error counted", tt.wantReason)
					}
					return nil
				})
			}
		})
	}
	t.Run("plaintext gets no response", func(t *testing.T) {
		c, err := net.Dial("tcp", m.in)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		var ne net.Error
		if len(b) != 0 || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("read %q, %v; want the connection closed without a byte", b, err)
		}
	})
}

func TestUpstreamTLSFailures(t *testing.T) {
	m := newMeshPair(t, "STRICT")
	m.sans = []string{spiffeID("someone-else")}
	m.push()
	resp, body, err := m.get()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || !strings.Contains(body, "SAN mismatch") {
		t.Errorf("SAN mismatch: status %d body %q; want 503 naming the SAN mismatch", resp.StatusCode, body)
	}
	if lines := metricLinesOf(m.client, "istio_requests_total", `response_flags="UF"`, `response_code="503"`); len(lines) == 0 {
		t.Errorf("no UF request counted")
	}

	m.sans = nil
	foreign := newTestCA(t, "foreign")
	fc, fk := foreign.Workload(t, spiffeID("server"))
	m.serverSecrets = []types.Resource{certSecret(fc, fk), rootSecret(m.ca.PEM, foreign.PEM)}
	m.push()
	resp, body, err = m.get()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || !strings.Contains(body, "certificate signed by unknown authority") {
		t.Errorf("foreign server: status %d body %q; want 503 unknown authority", resp.StatusCode, body)
	}
	if len(metricLinesOf(m.client, "gitmesh_proxy_tls_handshake_errors_total", `direction="upstream"`, `reason="fail_verify_error"`)) == 0 {
		t.Error("upstream verification failure not counted")
	}
}

// TestSecretRotation replaces default and ROOTCA on both proxies (a new
// root, with an overlap bundle) under a steady request loop: no request
// may fail.
func TestSecretRotation(t *testing.T) {
	m := newMeshPair(t, "STRICT")
	m.push()
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, _, err := m.get()
				switch {
				case err != nil:
					failed.Add(1)
					lastErr.Store(err.Error())
				case resp.StatusCode != 200:
					failed.Add(1)
					lastErr.Store(resp.Status)
				default:
					ok.Add(1)
				}
			}
		})
	}
	waitCount := func(min int64) {
		eventually(t, 10*time.Second, func() error {
			if ok.Load() < min {
				return fmt.Errorf("%d requests so far", ok.Load())
			}
			return nil
		})
	}
	waitCount(20)
	rootB := newTestCA(t, "root-b")
	// 1: both trust A and B.
	m.clientSecrets[1], m.serverSecrets[1] = rootSecret(m.ca.PEM, rootB.PEM), rootSecret(m.ca.PEM, rootB.PEM)
	m.push()
	waitCount(ok.Load() + 20)
	// 2: certificates from B (server first, then client, as a fleet rolls).
	sc, sk := rootB.Workload(t, spiffeID("server"))
	m.serverSecrets[0] = certSecret(sc, sk)
	m.push()
	waitCount(ok.Load() + 20)
	cc, ck := rootB.Workload(t, spiffeID("client"))
	m.clientSecrets[0] = certSecret(cc, ck)
	m.push()
	waitCount(ok.Load() + 20)
	// 3: only B.
	m.clientSecrets[1], m.serverSecrets[1] = rootSecret(rootB.PEM), rootSecret(rootB.PEM)
	m.push()
	waitCount(ok.Load() + 20)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during rotation; last: %v", n, n+ok.Load(), lastErr.Load())
	}
	t.Logf("%d requests, none failed", ok.Load())

	// New handshakes use the new material: a client with an A certificate
	// is refused now, one with a B certificate is served.
	aChain, aKey := m.ca.Workload(t, spiffeID("sleep"))
	bChain, bKey := rootB.Workload(t, spiffeID("sleep"))
	if _, err := directGet(m.in, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{keyPair(t, aChain, aKey)}}); err == nil {
		t.Error("a certificate of the retired root was accepted")
	}
	resp, err := directGet(m.in, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{keyPair(t, bChain, bKey)}})
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("certificate of the new root: %v %v; want 200", resp, err)
	}
	if st := resp.TLS; st != nil && len(st.PeerCertificates) > 0 && st.PeerCertificates[0].Issuer.Organization[0] != "root-b" {
		t.Errorf("server still presents a certificate of %v", st.PeerCertificates[0].Issuer)
	}
}

// TestSecretWarming: a listener whose secrets have not arrived is ACKed
// and warms (the previous configuration serves) until they do.
func TestSecretWarming(t *testing.T) {
	m := newMeshPair(t, "PERMISSIVE")
	secrets := m.serverSecrets
	m.serverSecrets = nil
	m.version++
	m.cp.set(t, m.serverID, snapshot(t, "1", m.serverResources()...))
	m.cp.waitACK(t, config.ListenerType, "1")
	m.cp.waitRequest(t, config.SecretType, func(r *discoveryRequest) bool {
		return strings.Join(r.GetResourceNames(), ",") == "ROOTCA,default"
	})
	if m.server.Ready() {
		t.Fatal("applied a listener whose secrets have not arrived")
	}
	for _, r := range m.cp.requests {
		if r.GetErrorDetail() != nil {
			t.Fatalf("NACK while warming: %v", r.GetErrorDetail())
		}
	}
	m.serverSecrets = secrets
	m.push()
	if resp, _, err := m.get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the secrets arrived: %v %v; want 200", resp, err)
	}
}

func TestSecretNACKAndDump(t *testing.T) {
	m := newMeshPair(t, "STRICT")
	m.push()
	t.Run("config_dump redacts keys", func(t *testing.T) {
		rec := httptest.NewRecorder()
		m.server.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/config_dump", nil))
		body := rec.Body.String()
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "UFJJVkFURSBLRVk") { // base64 of "PRIVATE KEY"
			t.Error("config_dump shows a private key")
		}
		if !strings.Contains(body, `"inlineString": "[redacted]"`) || !strings.Contains(body, `"name": "ROOTCA"`) {
			t.Errorf("config_dump lacks the redacted secrets:\n%s", body)
		}
	})
	t.Run("malformed secret is NACKed", func(t *testing.T) {
		chain := m.serverSecrets[0].(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		good := m.serverSecrets[0]
		m.serverSecrets[0] = certSecret(chain, []byte("not a key"))
		m.cp.set(t, m.serverID, snapshot(t, "bad", m.serverResources()...))
		req := m.cp.waitNACK(t, config.SecretType)
		if got := req.GetErrorDetail().GetMessage(); !strings.Contains(got, `Secret "default": tls_certificate.private_key: `) {
			t.Errorf("NACK %q; want it to name tls_certificate.private_key", got)
		}
		if resp, _, err := m.get(); err != nil || resp.StatusCode != 200 {
			t.Errorf("after the NACK: %v %v; want the last good secret serving", resp, err)
		}
		m.serverSecrets[0] = good
	})
}

// TestMTLSTCP: a TCP cluster originates mTLS to an inbound TCP chain.
func TestMTLSTCP(t *testing.T) {
	m := newMeshPair(t, "STRICT")
	echoAddr := tcpEcho(t, "echo")
	in := inboundListener(t, m.in, "STRICT", "unused")
	in.FilterChains[0].Filters = tcpListener(t, "x", m.in, &tcpproxyv3.TcpProxy{StatPrefix: "inbound", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "inbound-tcp"}}).FilterChains[0].Filters
	serverRes := append([]types.Resource{in, staticCluster(t, "inbound-tcp", svcHost, []string{echoAddr})}, m.serverSecrets...)
	up := staticCluster(t, "outbound-tcp", svcHost, []string{m.in})
	autoMTLS(t, up, true, spiffeID("server"))
	clientRes := append([]types.Resource{tcpListener(t, "outbound-tcp", m.out, &tcpproxyv3.TcpProxy{StatPrefix: "outbound", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: up.GetName()}}), up}, m.clientSecrets...)
	m.cp.set(t, m.serverID, snapshot(t, "1", serverRes...))
	m.cp.set(t, m.clientID, snapshot(t, "1", clientRes...))
	for _, p := range []*runningProxy{m.server, m.client} {
		eventually(t, 10*time.Second, func() error {
			if cfg := p.applied.Load(); cfg == nil || cfg.Resources.Versions[config.SecretType] != "1" {
				return fmt.Errorf("not applied")
			}
			return nil
		})
	}
	c, err := net.Dial("tcp", m.out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping")
	buf := make([]byte, len("echo:ping"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "echo:ping" {
		t.Fatalf("read %q, %v; want ping echoed through mTLS", buf, err)
	}
	c.Close()
	eventually(t, 5*time.Second, func() error {
		if len(metricLinesOf(m.server, "istio_tcp_connections_opened_total", `connection_security_policy="mutual_tls"`, `source_principal="`+spiffeID("client")+`"`)) == 0 {
			return fmt.Errorf("no mutual_tls TCP connection on the server")
		}
		return nil
	})
}

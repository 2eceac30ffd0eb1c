package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// scriptedADS is an in-test ADS server that sends exactly the responses a
// test gives it, in that order, whatever the proxy requested: like
// go-control-plane's snapshot cache with ads=false, which answers each
// type on its own, it may send a Listener or RouteConfiguration before the
// Cluster it names. It records every request.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr string
	out  chan *discoveryv3.DiscoveryResponse

	mu       sync.Mutex // protects requests
	requests []*discoveryv3.DiscoveryRequest
}

func startScriptedADS(t testing.TB) *scriptedADS {
	t.Helper()
	s := &scriptedADS{out: make(chan *discoveryv3.DiscoveryResponse, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

// StreamAggregatedResources records requests and sends queued responses.
func (s *scriptedADS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			s.mu.Lock()
			s.requests = append(s.requests, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
			s.mu.Unlock()
		}
	}()
	for {
		select {
		case err := <-errc:
			return err
		case <-st.Context().Done():
			return nil
		case resp := <-s.out:
			if err := st.Send(resp); err != nil {
				return err
			}
		}
	}
}

// send queues a response of typeURL at version with res and waits for the
// proxy's answer to it, which must be an ACK.
func (s *scriptedADS) send(t testing.TB, typeURL, version string, res ...proto.Message) {
	t.Helper()
	nonce := config.KindName(typeURL) + "-" + version
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce}
	for _, m := range res {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	s.out <- resp
	var answer *discoveryv3.DiscoveryRequest
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.requests {
			if r.GetTypeUrl() == typeURL && r.GetResponseNonce() == nonce {
				answer = r
				return nil
			}
		}
		return fmt.Errorf("no answer to %s", nonce)
	})
	if d := answer.GetErrorDetail(); d != nil {
		t.Fatalf("%s version %s NACKed: %s", config.KindName(typeURL), version, d.GetMessage())
	}
	if answer.GetVersionInfo() != version {
		t.Fatalf("%s answered with version %q; want an ACK of %q", config.KindName(typeURL), answer.GetVersionInfo(), version)
	}
}

// noNACKs fails the test if any request carried an error_detail.
func (s *scriptedADS) noNACKs(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.requests {
		if d := r.GetErrorDetail(); d != nil {
			t.Errorf("%s NACKed: %s", config.KindName(r.GetTypeUrl()), d.GetMessage())
		}
	}
}

// tcpExchange writes ping to addr, half-closes and returns what came back
// ("" when the proxy closed the connection without an upstream).
func tcpExchange(t testing.TB, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// proxyMetrics reads /metrics in-process.
func proxyMetrics(p *runningProxy) string {
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestListenerAndRoutesBeforeCluster: a Listener (HCM over RDS, and a TCP
// proxy) and its RouteConfiguration arrive before the CDS update that adds
// the clusters they name, first on an empty proxy, then as an update of a
// serving one. Both are ACKed, never NACKed; the proxy keeps serving what
// it had (or nothing) and applies the update once CDS arrives.
func TestListenerAndRoutesBeforeCluster(t *testing.T) {
	ads := startScriptedADS(t)
	out, tcpAddr := freeAddr(t), freeAddr(t)
	p := startProxy(t, ads.addr, nodemeta.Workload{ID: "n1", Service: "client", Namespace: "default", Outbound: out})
	const (
		cA   = "outbound|80||a.default.svc.cluster.local"
		cB   = "outbound|80||b.default.svc.cluster.local"
		cTCP = "outbound|5000||t.default.svc.cluster.local"
	)
	clA := staticCluster(t, cA, "a.default.svc.cluster.local", []string{hostPort(backend(t, "a"))})
	clB := staticCluster(t, cB, "b.default.svc.cluster.local", []string{hostPort(backend(t, "b"))})
	clTCP := staticCluster(t, cTCP, "t.default.svc.cluster.local", []string{tcpEcho(t, "t")})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := (&httpClient{}).do(mustRequest(t, "http://"+out+path, "web"))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("X-Backend")
	}

	// A proxy with nothing applied: LDS, then RDS, then CDS.
	ads.send(t, config.ListenerType, "1", hcmListener(t, "outbound", out, "outbound"))
	ads.send(t, config.RouteType, "1", routeConfig("outbound", vhost("web", []string{"web"}, toCluster(prefixMatch("/"), cA))))
	if p.current.Load() != nil {
		t.Fatalf("applied before the cluster arrived")
	}
	ads.send(t, config.ClusterType, "1", clA)
	p.waitReady(t)
	if code, be := get("/"); code != 200 || be != "a" {
		t.Fatalf("GET /: %d from %q; want 200 from a", code, be)
	}

	// An update: a new TCP listener and a new route, each to a cluster
	// the next CDS update adds.
	tcp := &tcpproxyv3.TcpProxy{StatPrefix: cTCP, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cTCP}}
	ads.send(t, config.ListenerType, "2", hcmListener(t, "outbound", out, "outbound"), tcpListener(t, "tcp", tcpAddr, tcp))
	ads.send(t, config.RouteType, "2", routeConfig("outbound", vhost("web", []string{"web"},
		toCluster(prefixMatch("/b"), cB), toCluster(prefixMatch("/"), cA))))
	if code, be := get("/b"); code != 200 || be != "a" {
		t.Errorf("GET /b while warming: %d from %q; want the applied routes (200 from a)", code, be)
	}
	if v := p.current.Load().Resources.Versions[config.RouteType]; v != "1" {
		t.Errorf("applied RDS version %q while warming; want 1", v)
	}
	ads.send(t, config.ClusterType, "2", clA, clB, clTCP)
	eventually(t, 10*time.Second, func() error {
		if code, be := get("/b"); code != 200 || be != "b" {
			return fmt.Errorf("GET /b: %d from %q; want 200 from b", code, be)
		}
		return nil
	})
	if got := tcpExchange(t, tcpAddr); got != "t:ping" {
		t.Errorf("TCP exchange: %q; want %q", got, "t:ping")
	}
	ads.noNACKs(t)
}

// TestMissingClusterAfterWarmingTimeout: a cluster that never arrives does
// not hold the update back past WarmingTimeout. It is applied without it:
// the route answers 503 with flag NC and the TCP proxy closes connections,
// as Envoy does; the cluster's later arrival heals both.
func TestMissingClusterAfterWarmingTimeout(t *testing.T) {
	ads := startScriptedADS(t)
	out, tcpAddr := freeAddr(t), freeAddr(t)
	p := startProxy(t, ads.addr, nodemeta.Workload{ID: "n1", Service: "client", Namespace: "default", Outbound: out},
		func(c *Config) { c.WarmingTimeout = 300 * time.Millisecond })
	const (
		ghost    = "outbound|80||ghost.default.svc.cluster.local"
		ghostTCP = "outbound|5000||ghost.default.svc.cluster.local"
	)
	tcp := &tcpproxyv3.TcpProxy{StatPrefix: ghostTCP, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: ghostTCP}}
	route := toCluster(prefixMatch("/"), ghost)
	route.GetRoute().ClusterNotFoundResponseCode = routev3.RouteAction_SERVICE_UNAVAILABLE
	start := time.Now()
	ads.send(t, config.ClusterType, "1")
	ads.send(t, config.ListenerType, "1", hcmListener(t, "outbound", out, "outbound"), tcpListener(t, "tcp", tcpAddr, tcp))
	ads.send(t, config.RouteType, "1", routeConfig("outbound", vhost("ghost", []string{"ghost"}, route)))
	p.waitReady(t)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("applied after %s, before the warming timeout", d)
	}
	resp, err := (&httpClient{}).do(mustRequest(t, "http://"+out+"/", "ghost"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.body != "" {
		t.Errorf("GET: %d %q; want 503 with no body", resp.StatusCode, resp.body)
	}
	if got := tcpExchange(t, tcpAddr); got != "" {
		t.Errorf("TCP exchange: %q; want the connection closed", got)
	}
	eventually(t, 5*time.Second, func() error {
		m := proxyMetrics(p)
		for _, want := range []string{
			`istio_requests_total{`, `istio_tcp_connections_closed_total{`,
		} {
			found := false
			for _, line := range strings.Split(m, "\n") {
				if strings.HasPrefix(line, want) && strings.Contains(line, `response_flags="NC"`) &&
					strings.Contains(line, `destination_service="unknown"`) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("/metrics has no %s... response_flags=\"NC\"} line", want)
			}
		}
		return nil
	})

	ads.send(t, config.ClusterType, "2",
		staticCluster(t, ghost, "ghost.default.svc.cluster.local", []string{hostPort(backend(t, "ghost"))}),
		staticCluster(t, ghostTCP, "ghost.default.svc.cluster.local", []string{tcpEcho(t, "g")}))
	eventually(t, 10*time.Second, func() error {
		resp, err := (&httpClient{}).do(mustRequest(t, "http://"+out+"/", "ghost"))
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || resp.body != "ghost" {
			return fmt.Errorf("GET: %d %q; want 200 from ghost", resp.StatusCode, resp.body)
		}
		return nil
	})
	if got := tcpExchange(t, tcpAddr); got != "g:ping" {
		t.Errorf("TCP exchange: %q; want %q", got, "g:ping")
	}
	ads.noNACKs(t)
}

// TestWarmingListenerRefusesConnections: a listener whose route
// configuration has not arrived is bound but not listening, so a client
// is refused at once instead of hanging in an accept queue (Envoy listens
// only once a listener is warm). Once warm it serves, and a request no
// route matches gets a 404 at once. An update of a serving listener warms
// while the old one keeps serving.
func TestWarmingListenerRefusesConnections(t *testing.T) {
	ads := startScriptedADS(t)
	out := freeAddr(t)
	startProxy(t, ads.addr, nodemeta.Workload{ID: "n1", Service: "client", Namespace: "default", Outbound: out},
		func(c *Config) { c.WarmingTimeout = time.Minute })
	const cA, cB = "outbound|80||a.default.svc.cluster.local", "outbound|80||b.default.svc.cluster.local"
	ads.send(t, config.ClusterType, "1",
		staticCluster(t, cA, "a.default.svc.cluster.local", []string{hostPort(backend(t, "a"))}),
		staticCluster(t, cB, "b.default.svc.cluster.local", []string{hostPort(backend(t, "b"))}))
	ads.send(t, config.ListenerType, "1", hcmListener(t, "outbound", out, "outbound"))

	start := time.Now()
	c, err := net.DialTimeout("tcp", out, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("connected to a warming listener; want connection refused")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing a warming listener: %v; want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %s; want at once", d)
	}

	get := func(path string) (int, string, time.Duration) {
		t.Helper()
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		resp, err := client.Do(mustRequest(t, "http://"+out+path, "web"))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Backend"), time.Since(start)
	}
	ads.send(t, config.RouteType, "1", routeConfig("outbound", vhost("web", []string{"web"}, toCluster(prefixMatch("/a"), cA))))
	eventually(t, 10*time.Second, func() error {
		if _, err := net.DialTimeout("tcp", out, time.Second); err != nil {
			return err
		}
		return nil
	})
	if code, be, _ := get("/a"); code != 200 || be != "a" {
		t.Errorf("GET /a: %d from %q; want 200 from a", code, be)
	}
	if code, _, d := get("/nothing-matches"); code != http.StatusNotFound || d > time.Second {
		t.Errorf("GET /nothing-matches: %d after %s; want 404 at once", code, d)
	}

	// The listener now names a route configuration that has not arrived:
	// the applied one keeps serving until it does.
	ads.send(t, config.ListenerType, "2", hcmListener(t, "outbound", out, "outbound-v2"))
	if code, be, _ := get("/a"); code != 200 || be != "a" {
		t.Errorf("GET /a while the update warms: %d from %q; want 200 from a", code, be)
	}
	ads.send(t, config.RouteType, "2", routeConfig("outbound-v2", vhost("web", []string{"web"}, toCluster(prefixMatch("/a"), cB))))
	eventually(t, 10*time.Second, func() error {
		if code, be, _ := get("/a"); code != 200 || be != "b" {
			return fmt.Errorf("GET /a: %d from %q; want 200 from b", code, be)
		}
		return nil
	})
	ads.noNACKs(t)
}

// TestWarmingTimeoutServesNoRoute: after WarmingTimeout a listener whose
// route configuration never arrived serves with no routes, as Envoy does
// after initial_fetch_timeout: every request gets a 404 at once, never a
// hang.
func TestWarmingTimeoutServesNoRoute(t *testing.T) {
	ads := startScriptedADS(t)
	out := freeAddr(t)
	p := startProxy(t, ads.addr, nodemeta.Workload{ID: "n1", Service: "client", Namespace: "default", Outbound: out},
		func(c *Config) { c.WarmingTimeout = 300 * time.Millisecond })
	ads.send(t, config.ClusterType, "1")
	ads.send(t, config.ListenerType, "1", hcmListener(t, "outbound", out, "never-sent"))
	p.waitReady(t)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Do(mustRequest(t, "http://"+out+"/", "web"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); resp.StatusCode != http.StatusNotFound || d > time.Second {
		t.Errorf("GET: %d after %s; want 404 at once", resp.StatusCode, d)
	}
	ads.noNACKs(t)
}

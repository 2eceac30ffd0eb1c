package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

const (
	reviewsHost    = "reviews.default.svc.cluster.local"
	reviewsAll     = "outbound|9080||" + reviewsHost
	reviewsV1      = "outbound|9080|v1|" + reviewsHost
	reviewsV2      = "outbound|9080|v2|" + reviewsHost
	ratingsAll     = "outbound|9080||ratings.default.svc.cluster.local"
	detailsAll     = "outbound|9080||details.default.svc.cluster.local"
	inboundCluster = "inbound|8080||"
)

// reviewsDomains are the domains the compiler emits for reviews:9080.
var reviewsDomains = []string{
	reviewsHost, reviewsHost + ":9080", "reviews", "reviews:9080",
	"reviews.default", "reviews.default:9080", "reviews.default.svc", "reviews.default.svc:9080",
}

// mesh is a sidecar proxy wired to an in-test controller, with backends
// reviews v1 and v2 and a local app.
type mesh struct {
	t        testing.TB
	cp       *controlPlane
	proxy    *runningProxy
	node     string
	out, in  string
	admin    string
	v1, v2   string
	app      string
	deadAddr string
	client   *http.Client
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	m := &mesh{
		t:     t,
		node:  "productpage-v1-abc",
		out:   freeAddr(t),
		in:    freeAddr(t),
		admin: freeAddr(t),
		v1:    hostPort(backend(t, "v1")),
		v2:    hostPort(backend(t, "v2")),
		app:   hostPort(backend(t, "app")),
	}
	m.deadAddr = freeAddr(t) // nothing listens there
	m.cp = startControlPlane(t, "127.0.0.1:0", nil)
	m.cp.set(t, m.node, snapshot(t, "1", m.resources()...))
	m.proxy = startProxy(t, m.cp.addr, nodemeta.Workload{
		ID: m.node, Service: "productpage", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels:   map[string]string{"app": "productpage", "version": "v1"},
		Outbound: m.out, Inbound: m.in, App: m.app, Admin: m.admin,
	})
	m.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(m.client.CloseIdleConnections)
	m.proxy.waitReady(t)
	return m
}

// resources is the default config: reviews routes to all endpoints unless
// routes are given.
func (m *mesh) resources(reviewsRoutes ...*routev3.Route) []types.Resource {
	t := m.t
	if len(reviewsRoutes) == 0 {
		reviewsRoutes = []*routev3.Route{toCluster(prefixMatch("/"), reviewsAll)}
	}
	return []types.Resource{
		hcmListener(t, "outbound", m.out, "outbound"),
		hcmListener(t, "inbound", m.in, "inbound"),
		routeConfig("outbound",
			vhost(reviewsHost+":9080", reviewsDomains, reviewsRoutes...),
			vhost("ratings.default.svc.cluster.local:9080", []string{"ratings", "ratings:9080"}, toCluster(prefixMatch("/"), ratingsAll)),
			vhost("details.default.svc.cluster.local:9080", []string{"details", "details:9080"}, toCluster(prefixMatch("/"), detailsAll)),
			vhost("wildcard", []string{"*.example.com"}, toCluster(prefixMatch("/"), reviewsV2)),
		),
		routeConfig("inbound", vhost("inbound", []string{"*"}, toCluster(prefixMatch("/"), inboundCluster))),
		edsCluster(t, reviewsAll, reviewsHost, "", false),
		edsCluster(t, reviewsV1, reviewsHost, "v1", false),
		edsCluster(t, reviewsV2, reviewsHost, "v2", false),
		edsCluster(t, ratingsAll, "ratings.default.svc.cluster.local", "", false),
		edsCluster(t, detailsAll, "details.default.svc.cluster.local", "", false),
		inlineCluster(t, inboundCluster, clusterv3.Cluster_STATIC, ep{Addr: m.app}),
		cla(t, reviewsAll, ep{Addr: m.v1, Version: "v1"}, ep{Addr: m.v2, Version: "v2"}),
		cla(t, reviewsV1, ep{Addr: m.v1, Version: "v1"}),
		cla(t, reviewsV2, ep{Addr: m.v2, Version: "v2"}),
		cla(t, ratingsAll), // no endpoints
		cla(t, detailsAll, ep{Addr: m.deadAddr, Version: "v1"}),
	}
}

// get sends a request to the outbound listener with the given Host header.
func (m *mesh) get(host, path string, hdr map[string]string) (*http.Response, string) {
	m.t.Helper()
	req, err := http.NewRequest("GET", "http://"+m.out+path, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return m.do(req)
}

func (m *mesh) do(req *http.Request) (*http.Response, string) {
	m.t.Helper()
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s (Host %s): %v", req.Method, req.URL, req.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		m.t.Fatal(err)
	}
	return resp, string(b)
}

// waitApplied waits until the proxy serves version of typeURL.
func (m *mesh) waitApplied(typeURL, version string) {
	m.t.Helper()
	eventually(m.t, 5*time.Second, func() error {
		if v := m.proxy.applied.Load().Resources.Versions[typeURL]; v != version {
			return fmt.Errorf("applied %s version %q; want %q", config.KindName(typeURL), v, version)
		}
		return nil
	})
}

// backendOf is the backend that answered, "" for proxy-generated answers.
func backendOf(resp *http.Response) string { return resp.Header.Get("X-Backend") }

func TestRouting(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.node, snapshot(t, "2", m.resources(
		toCluster(prefixMatch("/", exactHeader("end-user", "jason")), reviewsV2),
		toCluster(prefixMatch("/v1/"), reviewsV1),
		toCluster(prefixMatch("/"), reviewsV1),
	)...))
	m.cp.waitACK(t, config.RouteType, "2")
	m.waitApplied(config.RouteType, "2")

	tests := []struct {
		name      string
		host      string
		path      string
		hdr       map[string]string
		wantCode  int
		wantFrom  string
		wantBody  string
		wantFlags string
	}{
		{name: "short name", host: "reviews", path: "/", wantCode: 200, wantFrom: "v1"},
		{name: "short name and port", host: "reviews:9080", path: "/x", wantCode: 200, wantFrom: "v1"},
		{name: "fqdn and port", host: reviewsHost + ":9080", path: "/", wantCode: 200, wantFrom: "v1"},
		{name: "case-insensitive host", host: "Reviews.Default", path: "/", wantCode: 200, wantFrom: "v1"},
		{name: "header exact match", host: "reviews", path: "/", hdr: map[string]string{"end-user": "jason"}, wantCode: 200, wantFrom: "v2"},
		{name: "header mismatch falls through", host: "reviews", path: "/", hdr: map[string]string{"end-user": "json"}, wantCode: 200, wantFrom: "v1"},
		{name: "wildcard suffix domain", host: "api.example.com", path: "/", wantCode: 200, wantFrom: "v2"},
		{name: "unknown host", host: "nosuch:80", path: "/", wantCode: 404},
		{name: "no endpoints", host: "ratings", path: "/", wantCode: 503, wantBody: "no healthy upstream"},
		{name: "connect failure", host: "details", path: "/", wantCode: 503, wantBody: "connection failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := m.get(tt.host, tt.path, tt.hdr)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d; want %d (body %q)", resp.StatusCode, tt.wantCode, body)
			}
			if got := backendOf(resp); got != tt.wantFrom {
				t.Errorf("backend = %q; want %q", got, tt.wantFrom)
			}
			if tt.wantBody != "" && !strings.Contains(body, tt.wantBody) {
				t.Errorf("body = %q; want it to contain %q", body, tt.wantBody)
			}
			if tt.wantFrom != "" {
				if got := resp.Header.Get("X-Seen-Host"); got != tt.host {
					t.Errorf("upstream Host = %q; want %q (preserved)", got, tt.host)
				}
				if resp.Header.Get("X-Seen-Request-Id") == "" {
					t.Errorf("upstream saw no x-request-id")
				}
				if got := resp.Header.Get("X-Seen-Forwarded-For"); got != "127.0.0.1" {
					t.Errorf("upstream x-forwarded-for = %q; want 127.0.0.1", got)
				}
			}
		})
	}

	t.Run("absolute-form request URI", func(t *testing.T) {
		proxyURL, _ := url.Parse("http://" + m.out)
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
		defer c.CloseIdleConnections()
		for _, target := range []string{"http://reviews:9080/v1/x", "http://reviews.default.svc.cluster.local:9080/"} {
			resp, err := c.Get(target)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || backendOf(resp) != "v1" {
				t.Errorf("GET %s via proxy: status %d from %q; want 200 from v1", target, resp.StatusCode, backendOf(resp))
			}
		}
	})

	t.Run("inbound forwards to the app", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+m.in+"/anything", nil)
		req.Host = "productpage:9080"
		resp, body := m.do(req)
		if resp.StatusCode != 200 || body != "app" {
			t.Errorf("inbound: status %d body %q; want 200 app", resp.StatusCode, body)
		}
	})
}

func TestWeightedSplit(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.node, snapshot(t, "2", m.resources(
		toWeighted(prefixMatch("/"), map[string]uint32{reviewsV1: 50, reviewsV2: 50}),
	)...))
	m.cp.waitACK(t, config.RouteType, "2")
	m.waitApplied(config.RouteType, "2")
	const n = 1000
	counts := map[string]int{}
	for range n {
		resp, _ := m.get("reviews", "/", nil)
		counts[backendOf(resp)]++
	}
	for _, v := range []string{"v1", "v2"} {
		if share := float64(counts[v]) / n; share < 0.43 || share > 0.57 {
			t.Errorf("share of %s = %.3f (%v); want 0.50 ± 0.07", v, share, counts)
		}
	}
}

func TestUpdateSwitchesTraffic(t *testing.T) {
	m := newMesh(t)
	for i, want := range []string{"v1", "v2", "v1"} {
		cluster := reviewsV1
		if want == "v2" {
			cluster = reviewsV2
		}
		version := fmt.Sprint(i + 2)
		m.cp.set(t, m.node, snapshot(t, version, m.resources(toCluster(prefixMatch("/"), cluster))...))
		m.waitApplied(config.RouteType, version)
		// Once applied, every request goes to the new subset.
		for range 20 {
			if resp, _ := m.get("reviews", "/", nil); backendOf(resp) != want {
				t.Fatalf("after switching to %s a request reached %q", want, backendOf(resp))
			}
		}
	}
}

func TestInvalidUpdateIsNACKed(t *testing.T) {
	tests := []struct {
		name      string
		typeURL   string
		mutate    func(m *mesh, res []types.Resource) []types.Resource
		wantError string
	}{
		{
			name:    "route to an empty cluster name",
			typeURL: config.RouteType,
			mutate: func(m *mesh, _ []types.Resource) []types.Resource {
				return m.resources(toCluster(prefixMatch("/"), ""))
			},
			wantError: `RouteConfiguration "outbound": virtual_hosts[0].routes[0].route.cluster: empty cluster name`,
		},
		{
			name:    "unknown HTTP filter",
			typeURL: config.ListenerType,
			mutate: func(m *mesh, res []types.Resource) []types.Resource {
				res[0] = hcmListener(m.t, "outbound", m.out, "outbound", "envoy.filters.http.ratelimit", wellknown.Router)
				return res
			},
			wantError: `Listener "outbound": filter_chains[0].filters[0].typed_config.http_filters[0].name: unknown HTTP filter "envoy.filters.http.ratelimit"`,
		},
		{
			name:    "unbindable listener address",
			typeURL: config.ListenerType,
			mutate: func(m *mesh, res []types.Resource) []types.Resource {
				res = append(res, hcmListener(m.t, "extra", m.admin, "outbound")) // the admin server holds it
				return res
			},
			wantError: `Listener "extra": address: binding ` + "",
		},
		{
			name:    "unsupported route action",
			typeURL: config.RouteType,
			mutate: func(m *mesh, _ []types.Resource) []types.Resource {
				return m.resources(&routev3.Route{Match: prefixMatch("/"), Action: &routev3.Route_FilterAction{FilterAction: &routev3.FilterAction{}}})
			},
			wantError: `unknown route action`,
		},
		{
			name:    "unsupported cluster type",
			typeURL: config.ClusterType,
			mutate: func(m *mesh, res []types.Resource) []types.Resource {
				return append(res, inlineCluster(m.t, "logical", clusterv3.Cluster_LOGICAL_DNS))
			},
			wantError: `Cluster "logical": type: LOGICAL_DNS: not supported by gitmesh-proxy`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			if resp, _ := m.get("reviews", "/", nil); resp.StatusCode != 200 {
				t.Fatalf("before the update: status %d", resp.StatusCode)
			}
			m.cp.set(t, m.node, snapshot(t, "bad", tt.mutate(m, m.resources())...))
			nack := m.cp.waitNACK(t, tt.typeURL)
			if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, tt.wantError) {
				t.Errorf("NACK error_detail = %q; want it to contain %q", msg, tt.wantError)
			}
			if nack.GetVersionInfo() != "1" {
				t.Errorf("NACK version_info = %q; want the last accepted %q", nack.GetVersionInfo(), "1")
			}
			// The old configuration keeps serving.
			for range 10 {
				resp, _ := m.get("reviews", "/", nil)
				if resp.StatusCode != 200 {
					t.Fatalf("after the NACK: status %d", resp.StatusCode)
				}
			}
			dump := m.proxy.ConfigDump()
			if dump.LastNACK == nil || !strings.Contains(dump.LastNACK.Error, tt.wantError) {
				t.Errorf("config_dump last_nack = %+v", dump.LastNACK)
			}
			if v := dump.Versions[tt.typeURL]; v != "1" {
				t.Errorf("applied %s version = %q; want the last good %q", config.KindName(tt.typeURL), v, "1")
			}
			// A fixed update applies, though the cache kept re-sending the bad one.
			m.cp.set(t, m.node, snapshot(t, "3", m.resources(toCluster(prefixMatch("/"), reviewsV2))...))
			m.waitApplied(tt.typeURL, "3")
			m.waitApplied(config.RouteType, "3")
			if resp, _ := m.get("reviews", "/", nil); backendOf(resp) != "v2" {
				t.Errorf("after the fix: backend %q; want v2", backendOf(resp))
			}
		})
	}
}

func TestControllerRestart(t *testing.T) {
	m := newMesh(t)
	addr := m.cp.addr
	m.cp.Stop()
	eventually(t, 5*time.Second, func() error {
		if v := gaugeValue(t, m.admin, "gitmesh_proxy_xds_connected"); v != "0" {
			return fmt.Errorf("xds_connected = %s", v)
		}
		return nil
	})
	// Controller gone: the proxy keeps serving the last good config.
	for range 10 {
		if resp, _ := m.get("reviews:9080", "/", nil); resp.StatusCode != 200 {
			t.Fatalf("with the controller gone: status %d", resp.StatusCode)
		}
	}
	// A new controller (empty cache, as after a restart) at the same address.
	cp := startControlPlane(t, addr, nil)
	cp.set(t, m.node, snapshot(t, "2", m.resources(toCluster(prefixMatch("/"), reviewsV2))...))
	eventually(t, 10*time.Second, func() error {
		resp, _ := m.get("reviews", "/", nil)
		if backendOf(resp) != "v2" {
			return fmt.Errorf("backend %q; want v2", backendOf(resp))
		}
		return nil
	})
	cp.waitACK(t, config.RouteType, "2")
	if v := gaugeValue(t, m.admin, "gitmesh_proxy_xds_connected"); v != "1" {
		t.Errorf("xds_connected = %s; want 1", v)
	}
}

func TestMetricsAndAdmin(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.node, snapshot(t, "2", m.resources(
		toCluster(prefixMatch("/v2"), reviewsV2),
		toCluster(prefixMatch("/"), reviewsV1),
	)...))
	m.cp.waitACK(t, config.RouteType, "2")
	eventually(t, 5*time.Second, func() error {
		if resp, _ := m.get("reviews", "/v2", nil); backendOf(resp) != "v2" {
			return fmt.Errorf("not switched yet")
		}
		return nil
	})
	m.get("reviews", "/", nil)
	m.get("nosuch", "/", nil)
	m.get("ratings", "/", nil)
	req, _ := http.NewRequest("GET", "http://"+m.in+"/", nil)
	m.do(req)

	body := httpGet(t, "http://"+m.admin+"/metrics")
	for _, want := range []string{
		`destination_service="reviews.default.svc.cluster.local"`,
		`destination_version="v2"`,
		`destination_version="v1"`,
		`reporter="source"`,
		`source_workload="productpage-v1-abc"`,
		`source_app="productpage"`,
		`destination_workload="wl-v2"`,
		`response_code="404",response_flags="NR"`,
		`response_code="503",response_flags="UH"`,
		`reporter="destination"`,
		`istio_request_duration_milliseconds_bucket{`,
		`le="0.5"`,
		"gitmesh_proxy_xds_updates_applied_total",
		"gitmesh_proxy_xds_connected 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The v2 series carries the v2 version, not v1's.
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `destination_workload="wl-v2"`) &&
			!strings.Contains(line, `destination_version="v2"`) {
			t.Errorf("series of wl-v2 with the wrong version: %s", line)
		}
	}

	if got := httpGet(t, "http://"+m.admin+"/ready"); !strings.Contains(got, "ready") {
		t.Errorf("/ready = %q", got)
	}
	var dump ConfigDump
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+m.admin+"/config_dump")), &dump); err != nil {
		t.Fatal(err)
	}
	if dump.Versions[config.RouteType] != "2" || len(dump.Listeners) != 2 || len(dump.Clusters) != 6 || len(dump.Endpoints) != 5 {
		t.Errorf("config_dump: versions %v, %d listeners, %d clusters, %d endpoints", dump.Versions, len(dump.Listeners), len(dump.Clusters), len(dump.Endpoints))
	}
}

func TestReadyOnlyAfterFirstConfig(t *testing.T) {
	cp := startControlPlane(t, "127.0.0.1:0", nil)
	admin := freeAddr(t)
	p := startProxy(t, cp.addr, nodemeta.Workload{ID: "n1", Service: "a", Admin: admin})
	eventually(t, 5*time.Second, func() error {
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("/ready = %d; want 503", resp.StatusCode)
		}
		return nil
	})
	if p.Ready() {
		t.Fatal("ready without configuration")
	}
}

func TestH2C(t *testing.T) {
	m := newMesh(t)
	res := m.resources()
	for i, r := range res {
		if c, ok := r.(*clusterv3.Cluster); ok && c.GetName() == reviewsAll {
			res[i] = edsCluster(t, reviewsAll, reviewsHost, "", true)
		}
	}
	m.cp.set(t, m.node, snapshot(t, "2", res...))
	m.cp.waitACK(t, config.ClusterType, "2")
	m.waitApplied(config.ClusterType, "2")
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: tr}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+m.out+"/", nil)
	req.Host = "reviews"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("downstream proto = %s; want HTTP/2.0", resp.Proto)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != "HTTP/2.0" {
		t.Errorf("upstream proto = %q; want HTTP/2.0", got)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Host") != "reviews" {
		t.Errorf("status %d, upstream host %q", resp.StatusCode, resp.Header.Get("X-Seen-Host"))
	}
}

func TestListenerChangesKeepConnections(t *testing.T) {
	m := newMesh(t)
	// Hold a keep-alive connection to the outbound listener.
	conn, err := net.Dial("tcp", m.out)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	roundTrip := func() int {
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("on the held connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := roundTrip(); code != 200 {
		t.Fatalf("status %d", code)
	}
	// Add a listener and drop the inbound one.
	extra := freeAddr(t)
	res := m.resources()
	res[1] = hcmListener(t, "extra", extra, "outbound")
	res = slices.DeleteFunc(res, func(r types.Resource) bool {
		rc, ok := r.(*routev3.RouteConfiguration)
		return ok && rc.GetName() == "inbound"
	})
	m.cp.set(t, m.node, snapshot(t, "2", res...))
	m.cp.waitACK(t, config.ListenerType, "2")
	eventually(t, 5*time.Second, func() error {
		resp, err := http.Get("http://" + m.in + "/")
		if err == nil {
			resp.Body.Close()
			return fmt.Errorf("inbound listener still serves")
		}
		return nil
	})
	req, _ := http.NewRequest("GET", "http://"+extra+"/", nil)
	req.Host = "reviews"
	if resp, _ := m.do(req); resp.StatusCode != 200 {
		t.Errorf("new listener: status %d", resp.StatusCode)
	}
	if code := roundTrip(); code != 200 {
		t.Errorf("held connection after the listener update: status %d", code)
	}
}

func TestStrictDNSCluster(t *testing.T) {
	m := newMesh(t)
	res := m.resources()
	res = append(res, inlineCluster(t, "outbound|80||web.example.org", clusterv3.Cluster_STRICT_DNS, ep{Addr: m.v2, Version: "v2"}))
	for i, r := range res {
		if rc, ok := r.(*routev3.RouteConfiguration); ok && rc.GetName() == "outbound" {
			rc.VirtualHosts = append(rc.VirtualHosts, vhost("web", []string{"web.example.org"}, toCluster(prefixMatch("/"), "outbound|80||web.example.org")))
			res[i] = rc
		}
	}
	m.cp.set(t, m.node, snapshot(t, "2", res...))
	eventually(t, 5*time.Second, func() error {
		resp, _ := m.get("web.example.org", "/", nil)
		if backendOf(resp) != "v2" {
			return fmt.Errorf("status %d from %q", resp.StatusCode, backendOf(resp))
		}
		return nil
	})
}

func gaugeValue(t testing.TB, admin, name string) string {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, "http://"+admin+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func httpGet(t testing.TB, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestRouteTimeout(t *testing.T) {
	m := newMesh(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only when the proxy gives up
	}))
	t.Cleanup(slow.Close)
	const slowCluster = "outbound|80||slow.default.svc.cluster.local"
	timed := toCluster(prefixMatch("/"), slowCluster)
	timed.GetRoute().Timeout = durationpb.New(50 * time.Millisecond)
	res := m.resources()
	for _, r := range res {
		if rc, ok := r.(*routev3.RouteConfiguration); ok && rc.GetName() == "outbound" {
			rc.VirtualHosts = append(rc.VirtualHosts, vhost("slow", []string{"slow"}, timed))
		}
	}
	res = append(res, inlineCluster(t, slowCluster, clusterv3.Cluster_STATIC, ep{Addr: hostPort(slow)}))
	m.cp.set(t, m.node, snapshot(t, "2", res...))
	m.waitApplied(config.RouteType, "2")
	resp, body := m.get("slow", "/", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || body != "upstream request timeout" {
		t.Errorf("status %d body %q; want 504 upstream request timeout", resp.StatusCode, body)
	}
	if metrics := httpGet(t, "http://"+m.admin+"/metrics"); !strings.Contains(metrics, `response_code="504",response_flags="UT"`) {
		t.Errorf("/metrics lacks the UT series")
	}
}

package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// rig is a proxy wired to an in-test controller with nothing configured;
// each test pushes the resources it needs.
type rig struct {
	t       testing.TB
	cp      *controlPlane
	proxy   *runningProxy
	node    string
	out     string
	version int
	client  *http.Client
}

func newRig(t testing.TB, role string, opts ...func(*Config)) *rig {
	t.Helper()
	r := &rig{t: t, node: "rig-" + strings.ReplaceAll(t.Name(), "/", "-"), out: freeAddr(t)}
	r.cp = startControlPlane(t, "127.0.0.1:0", nil)
	r.proxy = startProxy(t, r.cp.addr, nodemeta.Workload{
		ID: r.node, Service: "client", Namespace: "default", Role: role,
		Labels: map[string]string{"app": "client", "version": "v1"}, Outbound: r.out,
	}, opts...)
	r.client = &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: 16},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(r.client.CloseIdleConnections)
	return r
}

// push serves res as the next snapshot and waits until it is applied.
func (r *rig) push(res ...types.Resource) {
	r.t.Helper()
	r.version++
	v := strconv.Itoa(r.version)
	r.cp.set(r.t, r.node, snapshot(r.t, v, res...))
	hasRoutes := false
	for _, x := range res {
		if _, ok := x.(*routev3.RouteConfiguration); ok {
			hasRoutes = true
		}
	}
	eventually(r.t, 10*time.Second, func() error {
		cfg := r.proxy.applied.Load()
		if cfg == nil {
			return fmt.Errorf("nothing applied")
		}
		vs := cfg.Resources.Versions
		if vs[config.ListenerType] != v || vs[config.ClusterType] != v || (hasRoutes && vs[config.RouteType] != v) {
			return fmt.Errorf("applied versions %v; want %s", vs, v)
		}
		return nil
	})
}

// outboundHTTP is the sidecar's outbound listener and its routes.
func (r *rig) outboundHTTP(vhosts ...*routev3.VirtualHost) []types.Resource {
	return []types.Resource{hcmListener(r.t, "outbound", r.out, "outbound"), routeConfig("outbound", vhosts...)}
}

// get sends a request through the outbound listener.
func (r *rig) get(method, host, path string, hdr map[string]string) (*http.Response, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.out+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return r.do(req)
}

func (r *rig) do(req *http.Request) (*http.Response, string) {
	r.t.Helper()
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s (Host %s): %v", req.Method, req.URL, req.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, string(b)
}

// metrics reads /metrics from the admin handler in-process (the rig binds
// no admin address).
func (r *rig) metrics() string {
	return metricsOf(r.proxy)
}

// metricLines returns the /metrics lines of a metric containing every
// fragment.
func (r *rig) metricLines(name string, fragments ...string) []string {
	return metricLinesOf(r.proxy, name, fragments...)
}

func metricsOf(p *runningProxy) string {
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// metricLinesOf returns p's /metrics lines of a metric containing every
// fragment.
func metricLinesOf(p *runningProxy, name string, fragments ...string) []string {
	var out []string
	for _, line := range strings.Split(metricsOf(p), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range fragments {
			ok = ok && strings.Contains(line, f)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// echo is a backend that answers with its name and what it saw: path,
// host, remote address and every request header as X-Req-<name>.
// handle, when set, may answer instead (it returns true when it did).
func echo(t testing.TB, name string, handle func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Backend", name)
		h.Set("X-Seen-Path", r.URL.RequestURI())
		h.Set("X-Seen-Host", r.Host)
		h.Set("X-Seen-Remote", r.RemoteAddr)
		for k, vs := range r.Header {
			h.Set("X-Req-"+k, strings.Join(vs, ","))
		}
		if handle != nil && handle(w, r) {
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// failing is a handle for echo that answers status to the first n
// requests, then lets echo answer.
func failing(n int64, status int) func(w http.ResponseWriter, r *http.Request) bool {
	var count atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) bool {
		if count.Add(1) <= n {
			w.WriteHeader(status)
			return true
		}
		return false
	}
}

// direct is a route answering body with 200: the route's name, to see
// which route matched.
func direct(m *routev3.RouteMatch, body string) *routev3.Route {
	return &routev3.Route{Name: body, Match: m, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}}}
}

// withRoute adjusts a route's RouteAction.
func withRoute(r *routev3.Route, mutate func(a *routev3.RouteAction)) *routev3.Route {
	mutate(r.GetRoute())
	return r
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

type discoveryRequest = discoveryv3.DiscoveryRequest

func contains(s, sub string) bool { return strings.Contains(s, sub) }

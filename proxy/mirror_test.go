package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

func TestMirroring(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	primary := echo(t, "primary", func(w http.ResponseWriter, req *http.Request) bool {
		io.Copy(io.Discard, req.Body)
		return false
	})
	// seen records what the shadow backend received, by path.
	var mu sync.Mutex
	seen := map[string]string{}
	shadow := echo(t, "shadow", func(w http.ResponseWriter, req *http.Request) bool {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		seen[req.URL.Path] = req.Host + " " + req.Method + " " + string(b)
		mu.Unlock()
		return false
	})
	const cP, cS = "outbound|80||web.default.svc.cluster.local", "outbound|80||web-canary.default.svc.cluster.local"
	mirrored := func(prefix string, pct uint32) *routev3.Route {
		return withRoute(toCluster(prefixMatch(prefix), cP), func(a *routev3.RouteAction) {
			a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
				Cluster: cS,
				RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
					Numerator: pct * 10000, Denominator: typev3.FractionalPercent_MILLION,
				}},
			}}
		})
	}
	r.push(append(r.outboundHTTP(vhost("web", []string{"web", "web:9080"}, mirrored("/all", 100), mirrored("/none", 0))),
		staticCluster(t, cP, "web.default.svc.cluster.local", []string{hostPort(primary)}),
		staticCluster(t, cS, "web-canary.default.svc.cluster.local", []string{hostPort(shadow)}))...)

	tests := []struct {
		name, host, method, path, body string
		want                           string // what the shadow saw; "" for nothing
	}{
		{name: "GET mirrored with -shadow host", host: "web", method: "GET", path: "/all/get", want: "web-shadow GET "},
		{name: "port kept after the suffix", host: "web:9080", method: "GET", path: "/all/port", want: "web-shadow:9080 GET "},
		{name: "POST body mirrored", host: "web", method: "POST", path: "/all/post", body: "hello", want: "web-shadow POST hello"},
		{name: "0% not mirrored", host: "web", method: "GET", path: "/none/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+r.out+tt.path, strings.NewReader(tt.body))
			req.Host = tt.host
			resp, _ := r.do(req)
			if backendOf(resp) != "primary" {
				t.Fatalf("answered by %q; want the primary", backendOf(resp))
			}
			if tt.want == "" {
				return
			}
			eventually(t, 5*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if got := seen[tt.path]; got != tt.want {
					return fmt.Errorf("shadow saw %q; want %q", got, tt.want)
				}
				return nil
			})
		})
	}
	// The 0% route's request would have arrived by now, after the others.
	mu.Lock()
	defer mu.Unlock()
	if got, ok := seen["/none/x"]; ok {
		t.Errorf("0%% route mirrored: %q", got)
	}
}

// hungBackend accepts connections and never answers. open reports how
// many of its connections the peer has not closed yet.
func hungBackend(t testing.TB) (addr string, open func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex // protects conns
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			n.Add(1)
			wg.Go(func() {
				defer n.Add(-1)
				io.Copy(io.Discard, c) // until the peer closes
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() int { return int(n.Load()) }
}

// TestMirrorToHungBackend: a mirror backend that accepts and never answers
// holds each shadow's slot for at most MirrorTimeout, even on a route that
// disables its timeout; the primary requests flow meanwhile, and once the
// slots are freed the shadows of other routes go out again.
func TestMirrorToHungBackend(t *testing.T) {
	const mirrorTimeout = 500 * time.Millisecond
	r := newRig(t, nodemeta.RoleSidecar, func(c *Config) { c.MirrorTimeout = mirrorTimeout })
	primary := backend(t, "primary")
	hung, open := hungBackend(t)
	var seen atomic.Int64
	good := echo(t, "good-shadow", func(w http.ResponseWriter, req *http.Request) bool {
		seen.Add(1)
		return false
	})
	const cP, cHung, cGood = "outbound|80||web.default.svc.cluster.local",
		"outbound|80||hung.default.svc.cluster.local", "outbound|80||good.default.svc.cluster.local"
	mirrored := func(prefix, shadow string) *routev3.Route {
		return withRoute(toCluster(prefixMatch(prefix), cP), func(a *routev3.RouteAction) {
			a.Timeout = dur(0) // disabled: only MirrorTimeout bounds the shadow
			a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: shadow}}
		})
	}
	r.push(append(r.outboundHTTP(vhost("web", []string{"web"}, mirrored("/hang", cHung), mirrored("/ok", cGood))),
		staticCluster(t, cP, "web.default.svc.cluster.local", []string{hostPort(primary)}),
		staticCluster(t, cHung, "hung.default.svc.cluster.local", []string{hung}),
		staticCluster(t, cGood, "good.default.svc.cluster.local", []string{hostPort(good)}))...)

	// More shadows than slots: every slot is held by the hung backend.
	for i := range maxShadows + 16 {
		start := time.Now()
		resp, _ := r.get("GET", "web", fmt.Sprintf("/hang/%d", i), nil)
		if resp.StatusCode != 200 || backendOf(resp) != "primary" {
			t.Fatalf("primary request %d: %d from %q; want 200 from the primary", i, resp.StatusCode, backendOf(resp))
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("primary request %d took %s while its shadow hangs", i, d)
		}
	}
	eventually(t, 5*time.Second, func() error {
		if n := open(); n < maxShadows {
			return fmt.Errorf("%d shadow connections open; want every slot (%d) taken", n, maxShadows)
		}
		return nil
	})
	held := time.Now()
	if resp, _ := r.get("GET", "web", "/ok", nil); resp.StatusCode != 200 {
		t.Fatalf("GET /ok: %d", resp.StatusCode)
	}
	eventually(t, 10*time.Second, func() error {
		if seen.Load() == 0 {
			return fmt.Errorf("the good shadow has not been sent")
		}
		return nil
	})
	t.Logf("a shadow went out %s after every slot was held", time.Since(held).Round(time.Millisecond))
	eventually(t, 10*time.Second, func() error {
		if n := open(); n != 0 {
			return fmt.Errorf("%d shadow connections to the hung backend still open", n)
		}
		return nil
	})
}

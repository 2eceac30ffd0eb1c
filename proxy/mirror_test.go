package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
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

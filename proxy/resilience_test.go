package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

func breakers(maxConns, maxPending, maxRequests uint32) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(maxConns), MaxPendingRequests: wrapperspb.UInt32(maxPending),
			MaxRequests: wrapperspb.UInt32(maxRequests), MaxRetries: wrapperspb.UInt32(4294967295), TrackRemaining: true,
		}}}
	}
}

// holding is a backend whose /hold requests wait for release; inflight
// counts the held ones.
func holding(t testing.TB, name string, inflight *atomic.Int64, release chan struct{}) string {
	return hostPort(echo(t, name, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/hold" {
			inflight.Add(1)
			<-release
		}
		return false
	}))
}

func TestCircuitBreakers(t *testing.T) {
	tests := []struct {
		name        string
		breakers    func(*clusterv3.Cluster)
		hold        int // requests held at the backend first
		pending     int // requests then sent that must wait, not fail
		wantOverflo bool
	}{
		{name: "max_requests", breakers: breakers(4294967295, 4294967295, 1), hold: 1, wantOverflo: true},
		{name: "max_connections then max_pending_requests", breakers: breakers(1, 1, 4294967295), hold: 1, pending: 1, wantOverflo: true},
		{name: "under the limits", breakers: breakers(4, 4, 4), hold: 2, pending: 0, wantOverflo: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nodemeta.RoleSidecar)
			var inflight atomic.Int64
			release := make(chan struct{})
			b := holding(t, "b", &inflight, release)
			const c = "outbound|80||cb.default.svc.cluster.local"
			r.push(append(r.outboundHTTP(vhost("cb", []string{"cb"}, toCluster(prefixMatch("/"), c))),
				staticCluster(t, c, "cb.default.svc.cluster.local", []string{b}, tt.breakers))...)
			var wg sync.WaitGroup
			codes := make(chan int, tt.hold+tt.pending)
			send := func() {
				wg.Go(func() {
					req, _ := http.NewRequest("GET", "http://"+r.out+"/hold", nil)
					req.Host = "cb"
					resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
					if err != nil {
						codes <- -1
						return
					}
					resp.Body.Close()
					codes <- resp.StatusCode
				})
			}
			for range tt.hold {
				send()
			}
			eventually(t, 5*time.Second, func() error {
				if n := inflight.Load(); n < int64(tt.hold) {
					return fmt.Errorf("%d requests held; want %d", n, tt.hold)
				}
				return nil
			})
			for range tt.pending {
				send()
			}
			eventually(t, 5*time.Second, func() error {
				if n := r.proxy.current.Load().Clusters[c].State.Pending.Load(); n < int64(tt.pending) {
					return fmt.Errorf("%d requests pending; want %d", n, tt.pending)
				}
				return nil
			})
			resp, body := r.get("GET", "cb", "/", nil)
			close(release)
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != 200 {
					t.Errorf("a held or pending request got %d; want 200", code)
				}
			}
			if !tt.wantOverflo {
				if resp.StatusCode != 200 {
					t.Errorf("status %d; want 200 under the limits", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != 503 || body != upstreamReset+"overflow" {
				t.Errorf("over the limit: %d %q; want 503 overflow", resp.StatusCode, body)
			}
			if len(r.metricLines("istio_requests_total", `response_code="503",response_flags="UO"`)) == 0 {
				t.Errorf("no istio_requests_total series with response_flags UO")
			}
			if len(r.metricLines("gitmesh_proxy_circuit_breaker_open_total", `cluster="`+c+`"`)) == 0 {
				t.Errorf("no gitmesh_proxy_circuit_breaker_open_total for %s", c)
			}
		})
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	for _, tt := range []struct {
		name      string
		limit     uint32
		wantConns int // distinct upstream connections for 6 sequential requests
	}{
		{"unlimited reuses one connection", 0, 1},
		{"one request per connection", 1, 6},
		{"two requests per connection", 2, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nodemeta.RoleSidecar)
			b := echo(t, "b", nil)
			const c = "outbound|80||mr.default.svc.cluster.local"
			cl := staticCluster(t, c, "mr.default.svc.cluster.local", []string{hostPort(b)})
			if tt.limit > 0 {
				cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{config.UpstreamHTTPOptionsKey: anyOf(t, &upstreamhttpv3.HttpProtocolOptions{
					CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(tt.limit)},
				})}
			}
			r.push(append(r.outboundHTTP(vhost("mr", []string{"mr"}, toCluster(prefixMatch("/"), c))), cl)...)
			conns := map[string]bool{}
			for range 6 {
				resp, _ := r.get("GET", "mr", "/", nil)
				conns[resp.Header.Get("X-Seen-Remote")] = true
			}
			if len(conns) != tt.wantConns {
				t.Errorf("%d upstream connections; want %d", len(conns), tt.wantConns)
			}
		})
	}
}

func TestOutlierDetection(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	var broken atomic.Bool
	broken.Store(true)
	bad := echo(t, "bad", func(w http.ResponseWriter, _ *http.Request) bool {
		if broken.Load() {
			w.WriteHeader(503)
			return true
		}
		return false
	})
	good := echo(t, "good", nil)
	const c = "outbound|80||od.default.svc.cluster.local"
	const ejection = 500 * time.Millisecond
	r.push(append(r.outboundHTTP(vhost("od", []string{"od"}, toCluster(prefixMatch("/"), c))),
		staticCluster(t, c, "od.default.svc.cluster.local", []string{hostPort(bad), hostPort(good)}, func(cl *clusterv3.Cluster) {
			cl.OutlierDetection = &clusterv3.OutlierDetection{
				Consecutive_5Xx: wrapperspb.UInt32(3), EnforcingConsecutive_5Xx: wrapperspb.UInt32(100),
				Interval: dur(100 * time.Millisecond), BaseEjectionTime: dur(ejection),
				MaxEjectionPercent: wrapperspb.UInt32(50), EnforcingSuccessRate: wrapperspb.UInt32(0),
			}
			cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}))...)
	// Round-robin alternates: the bad host answers every other request
	// until its third consecutive 503 ejects it.
	failures := 0
	for range 6 {
		if resp, _ := r.get("GET", "od", "/", nil); resp.StatusCode == 503 {
			failures++
		}
	}
	if failures != 3 {
		t.Fatalf("%d failures before ejection; want 3", failures)
	}
	ejectedAt := time.Now()
	for range 20 {
		if resp, _ := r.get("GET", "od", "/", nil); backendOf(resp) != "good" {
			t.Fatalf("request reached %q while the bad host is ejected", backendOf(resp))
		}
	}
	if len(r.metricLines("gitmesh_proxy_outlier_ejections_total", `cluster="`+c+`"`)) == 0 {
		t.Errorf("no ejection counted")
	}
	// The host recovers; it takes traffic again once its ejection ends.
	broken.Store(false)
	eventually(t, 5*time.Second, func() error {
		if resp, _ := r.get("GET", "od", "/", nil); backendOf(resp) != "bad" {
			return fmt.Errorf("the ejected host takes no traffic yet")
		}
		return nil
	})
	if back := time.Since(ejectedAt); back < ejection-50*time.Millisecond {
		t.Errorf("host back after %s; want at least the base ejection time %s", back, ejection)
	}
}

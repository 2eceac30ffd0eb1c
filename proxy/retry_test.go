package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// counted wraps an echo handle and counts the requests the backend saw.
func counted(n *atomic.Int64, handle func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		n.Add(1)
		return handle != nil && handle(w, r)
	}
}

func TestRetriesAndTimeouts(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	dead := freeAddr(t)
	type tcase struct {
		name      string
		policy    *routev3.RetryPolicy
		handle    func(w http.ResponseWriter, r *http.Request) bool
		extra     []string // more endpoints, before the backend
		noBackend bool     // only the extra endpoints
		method    string
		body      string
		chunked   bool // send the body without a Content-Length
		wantCode  int
		wantCalls int64 // requests the backend saw; 0: do not check
		wantFlags string
		wantBody  string
	}
	previousHosts := []*routev3.RetryPolicy_RetryHostPredicate{{
		Name:       config.PreviousHostsPredicate,
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: anyOf(t, &previoushostsv3.PreviousHostsPredicate{})},
	}}
	policy := func(on string, n uint32) *routev3.RetryPolicy {
		return &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(n), RetryHostPredicate: previousHosts,
			HostSelectionRetryMaxAttempts: 5, RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(time.Millisecond)}}
	}
	slowOnce := func() func(w http.ResponseWriter, r *http.Request) bool {
		var n atomic.Int64
		return func(w http.ResponseWriter, r *http.Request) bool {
			if n.Add(1) == 1 {
				<-r.Context().Done()
				return true
			}
			return false
		}
	}
	resetOnce := func() func(w http.ResponseWriter, r *http.Request) bool {
		var n atomic.Int64
		return func(w http.ResponseWriter, r *http.Request) bool {
			if n.Add(1) == 1 {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return true
			}
			return false
		}
	}
	perTry := policy("5xx", 2)
	perTry.PerTryTimeout = dur(50 * time.Millisecond)
	statusCodes := policy("retriable-status-codes", 1)
	statusCodes.RetriableStatusCodes = []uint32{418}
	tests := []tcase{
		{name: "5xx retried on the same only host", policy: policy("5xx", 2), handle: failing(1, 503), wantCode: 200, wantCalls: 2, wantFlags: "-"},
		{name: "gateway-error does not retry 500", policy: policy("gateway-error", 2), handle: failing(1, 500), wantCode: 500, wantCalls: 1},
		{name: "gateway-error retries 502", policy: policy("gateway-error", 2), handle: failing(2, 502), wantCode: 200, wantCalls: 3},
		{name: "retriable-4xx retries 409", policy: policy("retriable-4xx", 1), handle: failing(1, 409), wantCode: 200, wantCalls: 2},
		{name: "retriable-status-codes", policy: statusCodes, handle: failing(1, 418), wantCode: 200, wantCalls: 2},
		{name: "exhausted retries return the last response with URX", policy: policy("5xx", 2), handle: failing(100, 503), wantCode: 503, wantCalls: 3, wantFlags: "URX"},
		{name: "no policy: no retry", handle: failing(1, 503), wantCode: 503, wantCalls: 1, wantFlags: "-"},
		{name: "connect-failure goes to another host", policy: policy("connect-failure", 1), extra: []string{dead}, wantCode: 200, wantFlags: "-"},
		{name: "connect failure without retry", extra: []string{dead}, noBackend: true, wantCode: 503, wantFlags: "UF"},
		{name: "per-try timeout retried", policy: perTry, handle: slowOnce(), wantCode: 200, wantCalls: 2},
		{name: "reset retried", policy: policy("reset", 1), handle: resetOnce(), wantCode: 200, wantCalls: 2},
		{name: "POST body replayed", policy: policy("5xx", 1), handle: failing(1, 503), method: "POST", body: "payload", wantCode: 200, wantCalls: 2, wantBody: "payload"},
		{name: "chunked POST body replayed", policy: policy("5xx", 1), handle: failing(1, 503), method: "POST", body: "payload", chunked: true, wantCode: 200, wantCalls: 2, wantBody: "payload"},
		{name: "body over the buffer limit not replayed", policy: policy("5xx", 1), handle: failing(1, 503), method: "POST", body: strings.Repeat("x", maxBufferedBody+1), wantCode: 503, wantCalls: 1, wantFlags: "URX"},
	}
	var res []types.Resource
	var vhosts []*routev3.VirtualHost
	counts := make([]*atomic.Int64, len(tests))
	for i, tt := range tests {
		counts[i] = new(atomic.Int64)
		handle := tt.handle
		b := echo(t, "b", counted(counts[i], func(w http.ResponseWriter, req *http.Request) bool {
			if handle != nil && handle(w, req) {
				return true
			}
			if req.Method == "POST" {
				io.Copy(w, req.Body)
				return true
			}
			return false
		}))
		name := fmt.Sprintf("outbound|80||r%d.default.svc.cluster.local", i)
		addrs := append([]string{}, tt.extra...)
		if !tt.noBackend {
			addrs = append(addrs, hostPort(b))
		}
		res = append(res, staticCluster(t, name, fmt.Sprintf("r%d.default.svc.cluster.local", i), addrs))
		rt := toCluster(prefixMatch("/"), name)
		rt.GetRoute().RetryPolicy = tt.policy
		vhosts = append(vhosts, vhost(name, []string{fmt.Sprintf("r%d", i)}, rt))
	}
	r.push(append(res, r.outboundHTTP(vhosts...)...)...)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// With a dead endpoint, round-robin alternates: send two so one
			// starts on the dead host.
			n := 1
			if len(tt.extra) > 0 {
				n = 4
			}
			for range n {
				counts[i].Store(0)
				method := tt.method
				if method == "" {
					method = "GET"
				}
				req, _ := http.NewRequest(method, "http://"+r.out+"/", strings.NewReader(tt.body))
				if tt.chunked {
					req.Body, req.GetBody, req.ContentLength = io.NopCloser(strings.NewReader(tt.body)), nil, -1
				}
				req.Host = fmt.Sprintf("r%d", i)
				resp, body := r.do(req)
				if resp.StatusCode != tt.wantCode {
					t.Fatalf("status %d; want %d (body %q)", resp.StatusCode, tt.wantCode, body)
				}
				if tt.wantCalls > 0 && counts[i].Load() != tt.wantCalls {
					t.Errorf("backend saw %d requests; want %d", counts[i].Load(), tt.wantCalls)
				}
				if tt.wantBody != "" && body != tt.wantBody {
					t.Errorf("body %q; want %q", body, tt.wantBody)
				}
			}
			if tt.wantFlags != "" {
				host := fmt.Sprintf(`destination_service="r%d.default.svc.cluster.local"`, i)
				if len(r.metricLines("istio_requests_total", host, `response_flags="`+tt.wantFlags+`"`)) == 0 {
					t.Errorf("no series for %s with response_flags %q", host, tt.wantFlags)
				}
			}
		})
	}
	if len(r.metricLines("gitmesh_proxy_upstream_retries_total")) == 0 {
		t.Errorf("no retry counter")
	}
}

func TestGRPCTimeout(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	slow := echo(t, "slow", func(w http.ResponseWriter, req *http.Request) bool {
		<-req.Context().Done()
		return true
	})
	const c = "outbound|80||g.default.svc.cluster.local"
	rt := withRoute(toCluster(prefixMatch("/"), c), func(a *routev3.RouteAction) {
		a.Timeout = dur(0)
		a.MaxGrpcTimeout = dur(time.Hour)
	})
	r.push(append(r.outboundHTTP(vhost("g", []string{"g"}, rt)), staticCluster(t, c, "g.default.svc.cluster.local", []string{hostPort(slow)}))...)
	start := time.Now()
	resp, _ := r.get("POST", "g", "/", map[string]string{"Content-Type": "application/grpc", "Grpc-Timeout": "50m"})
	if resp.StatusCode != 504 || time.Since(start) > 5*time.Second {
		t.Errorf("status %d after %s; want 504 after the 50ms grpc-timeout", resp.StatusCode, time.Since(start))
	}
}

var _ = corev3.RoutingPriority_DEFAULT

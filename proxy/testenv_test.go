package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// ---- polling ----

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// freeAddr returns a loopback address for a listener the proxy binds later
// (see testnet.FreeAddr).
func freeAddr(t testing.TB) string { return testnet.FreeAddr(t) }

// ---- control plane ----

// controlPlane is an in-test ADS server backed by a snapshot cache. It
// records the requests proxies send, to observe ACKs and NACKs.
type controlPlane struct {
	cache cachev3.SnapshotCache
	srv   *grpc.Server
	addr  string
	done  chan struct{}

	mu       sync.Mutex // protects requests
	requests []*discoveryv3.DiscoveryRequest
}

func startControlPlane(t testing.TB, addr string, cache cachev3.SnapshotCache) *controlPlane {
	t.Helper()
	if cache == nil {
		cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, gcplog.LoggerFuncs{})
	}
	cp := &controlPlane{cache: cache, done: make(chan struct{})}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			cp.mu.Lock()
			cp.requests = append(cp.requests, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
			cp.mu.Unlock()
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	xds := serverv3.NewServer(ctx, cache, cb)
	cp.srv = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.srv, xds)
	var ln net.Listener
	var err error
	for range 50 { // a restarted controller may race the old socket's close
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	go func() {
		defer close(cp.done)
		defer cancel()
		cp.srv.Serve(ln)
	}()
	t.Cleanup(cp.Stop)
	return cp
}

func (cp *controlPlane) Stop() {
	cp.srv.Stop()
	<-cp.done
}

func (cp *controlPlane) set(t testing.TB, node string, snap *cachev3.Snapshot) {
	t.Helper()
	if err := snap.Consistent(); err != nil {
		t.Fatalf("inconsistent snapshot: %v", err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// waitRequest waits for a request of typeURL matching pred.
func (cp *controlPlane) waitRequest(t testing.TB, typeURL string, pred func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	var got *discoveryv3.DiscoveryRequest
	eventually(t, 10*time.Second, func() error {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		for _, r := range cp.requests {
			if r.GetTypeUrl() == typeURL && pred(r) {
				got = r
				return nil
			}
		}
		return fmt.Errorf("no matching %s request among %d", config.KindName(typeURL), len(cp.requests))
	})
	return got
}

func (cp *controlPlane) waitACK(t testing.TB, typeURL, version string) {
	t.Helper()
	cp.waitRequest(t, typeURL, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == version && r.GetErrorDetail() == nil && r.GetResponseNonce() != ""
	})
}

func (cp *controlPlane) waitNACK(t testing.TB, typeURL string) *discoveryv3.DiscoveryRequest {
	t.Helper()
	return cp.waitRequest(t, typeURL, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
}

// ---- resources, built by hand per docs/xds-conventions.md ----

func edsCluster(t testing.TB, name, host, subset string, http2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			ServiceName: name,
		},
		ConnectTimeout: durationpb.New(10 * time.Second),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		Metadata:       istioClusterMeta(host, subset),
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{config.UpstreamHTTPOptionsKey: anyOf(t, &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		})}
	}
	return c
}

func snapshot(t testing.TB, version string, res ...types.Resource) *cachev3.Snapshot {
	t.Helper()
	byType := map[string][]types.Resource{config.ClusterType: nil, config.ListenerType: nil}
	for _, r := range res {
		var typ string
		switch r.(type) {
		case *listenerv3.Listener:
			typ = config.ListenerType
		case *routev3.RouteConfiguration:
			typ = config.RouteType
		case *clusterv3.Cluster:
			typ = config.ClusterType
		case *endpointv3.ClusterLoadAssignment:
			typ = config.EndpointType
		case *tlsv3.Secret:
			typ = config.SecretType
		}
		byType[typ] = append(byType[typ], r)
	}
	s, err := cachev3.NewSnapshot(version, byType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ---- backends and the proxy ----

// backend is an HTTP server that answers with its name and echoes what
// the proxy added.
func backend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Proto", r.Proto)
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		io.WriteString(w, name)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func hostPort(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

type runningProxy struct {
	*Proxy
	cancel context.CancelFunc
	done   chan error
}

func startProxy(t testing.TB, xdsAddr string, w nodemeta.Workload, opts ...func(*Config)) *runningProxy {
	t.Helper()
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{XDSAddr: xdsAddr, Workload: w, Logger: logger, BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, DrainTimeout: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningProxy{Proxy: p, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rp.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return rp
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (rp *runningProxy) waitReady(t testing.TB) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if !rp.Ready() {
			return errors.New("proxy not ready")
		}
		return nil
	})
}

// httpClient is a one-shot client for polling loops.
type httpClient struct{}

type bodyResponse struct {
	*http.Response
	body string
}

func (httpClient) do(req *http.Request) (*bodyResponse, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &bodyResponse{Response: resp, body: string(b)}, err
}

func mustRequest(t testing.TB, url, host string) *http.Request {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return req
}

// Package adsload simulates a fleet of Envoy-style proxies on ADS, for the
// control-plane benchmark: each proxy opens its own gRPC connection and one
// aggregated stream (state of the world or delta), subscribes to listeners
// and clusters by wildcard, then to the routes and endpoints they name,
// ACKs every response and NACKs none, as Envoy does.
//
// It runs in its own process (gitmesh-bench adsload) so the controller's
// CPU and memory are the controller's alone, and talks to the harness with
// JSON lines: it prints an Event when every proxy has ACKed its first
// snapshot, takes "mark" on stdin before the harness commits a change and
// prints an Event when every proxy has ACKed the changed routes and the
// stream has been quiet for a while.
package adsload

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// Config is one fleet.
type Config struct {
	// XDSAddr is the controller's ADS address.
	XDSAddr string
	// N is the number of proxies.
	N int
	// Delta selects incremental xDS; the default is state of the world.
	Delta bool
	// Workload returns proxy i's identity. If nil, every proxy is a sidecar
	// of one class (service bench-client, namespace default, one outbound
	// address), ids bench-<i>.
	Workload func(i int) nodemeta.Workload
	// ConnectTimeout bounds the wait for every proxy's first snapshot;
	// ConvergeTimeout the wait for a change after "mark". Quiet is how long
	// no response may arrive before a converged change is reported.
	ConnectTimeout, ConvergeTimeout, Quiet time.Duration
}

// Event is one line the load client prints.
type Event struct {
	// Event is "connected", "converged" or "error".
	Event string `json:"event"`
	// Ready is how many proxies reached the state the event is about.
	Ready int `json:"ready"`
	// Timeout is true when not every proxy got there in time.
	Timeout bool `json:"timeout,omitempty"`
	// ConnectMS is the time from the first dial to the last proxy's ACK of
	// its first snapshot (connected).
	ConnectMS float64 `json:"connect_ms,omitempty"`
	// AckUnixNano is, per proxy, when it ACKed the changed routes
	// (converged): wall clock, to compare with the controller's log.
	AckUnixNano []int64 `json:"ack_unix_nano,omitempty"`
	// Bytes and Responses count the discovery responses received (their
	// protobuf size) since the start (connected) or since "mark"
	// (converged).
	Bytes     int64 `json:"bytes"`
	Responses int64 `json:"responses"`
	// Error says what failed ("error").
	Error string `json:"error,omitempty"`
}

// Run runs the fleet until ctx is done, stdin closes or says "quit".
func Run(ctx context.Context, cfg Config, stdin io.Reader, stdout io.Writer) error {
	if cfg.Workload == nil {
		cfg.Workload = func(i int) nodemeta.Workload {
			return nodemeta.Workload{
				ID: fmt.Sprintf("bench-%d", i), Service: "bench-client", Namespace: nodemeta.DefaultNamespace,
				Role: nodemeta.RoleSidecar, Labels: map[string]string{"app": "bench-client"}, Outbound: "127.0.0.1:15001",
			}
		}
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 500 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fleet{cfg: cfg, names: newNameCache(), proxies: make([]*proxy, cfg.N)}
	var enc sync.Mutex // serializes stdout
	emit := func(e Event) {
		enc.Lock()
		defer enc.Unlock()
		b, _ := json.Marshal(e)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.N {
		p := &proxy{f: f, node: cfg.Workload(i).Node()}
		f.proxies[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
		}()
	}
	defer wg.Wait()
	defer cancel()

	// connected
	ev := Event{Event: "connected"}
	ev.Timeout = !f.wait(ctx, cfg.ConnectTimeout, 0, func() int64 { return f.ready.Load() })
	ev.Ready = int(f.ready.Load())
	ev.ConnectMS = float64(time.Duration(f.lastReady.Load()-start.UnixNano())) / float64(time.Millisecond)
	ev.Bytes, ev.Responses = f.bytes.Load(), f.responses.Load()
	emit(ev)

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var cmd string
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case cmd, ok = <-lines:
		}
		if !ok || cmd == "quit" {
			return nil
		}
		if cmd != "mark" {
			emit(Event{Event: "error", Error: fmt.Sprintf("unknown command %q", cmd)})
			continue
		}
		f.mark()
		emit(Event{Event: "marked"})
		ev := Event{Event: "converged"}
		ev.Timeout = !f.wait(ctx, cfg.ConvergeTimeout, cfg.Quiet, func() int64 { return f.changed.Load() })
		ev.Ready = int(f.changed.Load())
		ev.Bytes, ev.Responses = f.bytes.Load(), f.responses.Load()
		for _, p := range f.proxies {
			p.mu.Lock()
			if !p.changedAt.IsZero() {
				ev.AckUnixNano = append(ev.AckUnixNano, p.changedAt.UnixNano())
			}
			p.mu.Unlock()
		}
		emit(ev)
	}
}

// fleet is the proxies and their shared counters.
type fleet struct {
	cfg     Config
	names   *nameCache
	proxies []*proxy

	ready, changed   atomic.Int64 // proxies ready / ACKed the change since mark
	lastReady        atomic.Int64 // unix nanos of the last proxy getting ready
	lastResponse     atomic.Int64 // unix nanos of the last response received
	bytes, responses atomic.Int64 // since start, or since mark
	marked           atomic.Bool
}

// mark starts a change: counters restart and each proxy remembers its
// current routes' version.
func (f *fleet) mark() {
	f.changed.Store(0)
	f.bytes.Store(0)
	f.responses.Store(0)
	for _, p := range f.proxies {
		p.mu.Lock()
		p.markVersion, p.changedAt, p.marked = p.versions[typeRoutes], time.Time{}, true
		p.mu.Unlock()
	}
	f.marked.Store(true)
}

// wait polls count until it reaches N and no response has arrived for
// quiet, or d passes. It reports whether count reached N.
func (f *fleet) wait(ctx context.Context, d, quiet time.Duration, count func() int64) bool {
	deadline := time.Now().Add(d)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		all := count() >= int64(f.cfg.N)
		if all && time.Since(time.Unix(0, f.lastResponse.Load())) >= quiet {
			return true
		}
		if time.Now().After(deadline) {
			return all
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// proxy is one simulated Envoy.
type proxy struct {
	f    *fleet
	node interface{ GetId() string }

	mu          sync.Mutex // protects the fields below
	versions    map[string]string
	ready       bool
	markVersion string
	marked      bool
	changedAt   time.Time
}

// run connects and serves the proxy's stream until ctx is done. A stream
// that fails is opened again after 100ms, as Envoy retries.
func (p *proxy) run(ctx context.Context) {
	conn, err := grpc.NewClient(p.f.cfg.XDSAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20)))
	if err != nil {
		return
	}
	defer conn.Close()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	for ctx.Err() == nil {
		if p.f.cfg.Delta {
			_ = p.delta(ctx, client)
		} else {
			_ = p.sotw(ctx, client)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// received counts a response of size bytes.
func (p *proxy) received(size int) {
	p.f.bytes.Add(int64(size))
	p.f.responses.Add(1)
	p.f.lastResponse.Store(time.Now().UnixNano())
}

// acked records that the proxy ACKed a response of typ at version (for
// delta, version is the response's nonce: every routes response is new),
// and whether the proxy now has everything it subscribed to (want: the
// types it subscribed to and must have ACKed).
func (p *proxy) acked(typ, version string, nonEmpty bool, want []string) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.versions == nil {
		p.versions = map[string]string{}
	}
	p.versions[typ] = version
	if p.marked && typ == typeRoutes && p.changedAt.IsZero() && version != p.markVersion && nonEmpty {
		p.changedAt = now
		p.f.changed.Add(1)
	}
	if p.ready {
		return
	}
	for _, t := range want {
		if _, ok := p.versions[t]; !ok {
			return
		}
	}
	p.ready = true
	p.f.ready.Add(1)
	p.f.lastReady.Store(now.UnixNano())
}

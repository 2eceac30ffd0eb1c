// Package xds is gitmesh's xDS control plane: an ADS server (state of the
// world and delta) built on go-control-plane, per-node snapshot assignment,
// ACK/NACK tracking, and the fleet status the reconciler gates rollouts on.
//
// The package owns mechanics only. The reconciler decides which node runs
// which version and calls SetSnapshot; this package delivers it, watches the
// node's ACKs and NACKs, maps them back to the version label, and reports
// the result through Nodes and Changed.
//
// # ADS mode
//
// The config cache (configCache) answers requests as go-control-plane's
// SnapshotCache does with ads=false, on purpose. With ads=true,
// go-control-plane answers a request that names resources only when the
// request names every resource of that type in the snapshot (see
// snapshotCache.respond in pkg/cache/v3/simple.go); otherwise it logs
// "ADS mode: not responding" and the client stalls until its next request.
// Our bundled proxy would be fine either way (it subscribes LDS and CDS as
// wildcards and RDS/EDS by the exact names of a consistent snapshot), but a
// proxyless grpc-go client (docs/proxyless-grpc.md) subscribes LDS by
// the name of each <host>:<port> it dials, a subset of the listeners in its
// snapshot, sometimes for a host that does not exist. With ads=false the
// cache answers such a request at once with the named resources that exist,
// at the type's version, and the client ACKs it.
//
// What ads=false gives up is the cache ordering its pushes across types on
// a snapshot change (CDS before EDS before LDS before RDS). Consistency is
// still checked in SetSnapshot (Snapshot.Consistent); Envoy orders its own
// application by warming clusters and listeners until their EDS/RDS arrive,
// and the bundled proxy applies an update all at once or not at all
// (docs/xds-conventions.md).
//
// # Marshalled once per snapshot
//
// The config cache is ours rather than go-control-plane's SnapshotCache,
// which marshals every resource again for every response to every node.
// The reconciler assigns one *Snapshot to all the nodes of a proxy class;
// the cache encodes it once, builds each response body (the repeated
// resources field in wire form) once per set of names, and the server's
// codec sends that body to every stream without copying it (encoded.go,
// codec.go). Secrets, small and per node, stay in a SnapshotCache.
//
// # ACK mapping
//
// Each response a stream sends is remembered by nonce with its type and
// per-type version; a request echoing that nonce ACKs it, or NACKs it if it
// carries error_detail. Per node, the per-type versions of the last few
// assigned labels map ACKed types back to the label the node runs
// (NodeStatus.Acked states the rule). A NACKed version is not resent: the
// watch is parked until the node's snapshot changes (see
// callbacks.OnStreamRequest).
//
// # Secrets
//
// SDS secrets (certificates) share the ADS stream but not the config's
// cache or bookkeeping: see secrets.go.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// adsCacheMode is the ads flag of the secrets' SnapshotCache; see the
// package doc.
const adsCacheMode = false

// Defaults of the options.
const (
	// DefaultGracePeriod is how long a disconnected node stays in Nodes.
	DefaultGracePeriod = time.Minute
	// DefaultStopTimeout bounds the graceful stop of Serve.
	DefaultStopTimeout = 5 * time.Second
)

// Server is the xDS server. Create it with NewServer, run it with Serve and
// drive it with SetSnapshot and ClearSnapshot. All methods are safe for
// concurrent use.
type Server struct {
	log         *slog.Logger
	grace       time.Duration
	stopTimeout time.Duration
	grpcOpts    []grpc.ServerOption
	admit       AdmitFunc    // nil: admit every valid node
	gate        func() error // nil: accept every stream
	requireCert bool         // refuse streams without a verified client certificate
	services    []func(grpc.ServiceRegistrar)

	cache   *configCache          // config: every type but secrets
	names   *nameLists            // requests' resource names, shared (names.go)
	secrets cachev3.SnapshotCache // secrets (SDS), see secrets.go
	changed chan struct{}
	// wmu protects watchers: changed and the channels Subscribe handed out.
	wmu      sync.Mutex
	watchers []chan struct{}
	serving  atomic.Bool
	metrics  *metrics

	// mu protects nodes and streams. It is also held across every write to
	// cache (SetSnapshot, ClearSnapshot) so that the assignment recorded in
	// nodes and the snapshot in the cache change together: the response
	// callbacks that map a nonce to a version then always find the
	// assignment, and a node forgotten after its grace period cannot race a
	// reconnect that opens new watches. Lock order: mu, then the cache's
	// own lock; the caches never call back into Server.
	mu      sync.Mutex
	nodes   map[string]*node
	streams map[streamKey]*streamState
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger. If nil (the default), the server logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.log = l
		}
	}
}

// WithGracePeriod sets how long a disconnected node is kept (with
// Connected=false and its assignment) before it is forgotten and its
// snapshot dropped; a node that reconnects within it keeps its assignment.
// A node assigned a snapshot that never connects is forgotten likewise,
// counting from its first assignment. Zero or less means
// DefaultGracePeriod.
func WithGracePeriod(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.grace = d
		}
	}
}

// WithStopTimeout bounds how long Serve waits for streams to end once its
// context is done before it closes them forcibly. Zero or less means
// DefaultStopTimeout.
func WithStopTimeout(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.stopTimeout = d
		}
	}
}

// WithGRPCServerOptions adds options to the gRPC server Serve creates, e.g.
// grpc.Creds for TLS. They apply after the server's keepalive defaults.
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(s *Server) { s.grpcOpts = append(s.grpcOpts, opts...) }
}

// NewServer returns a Server with an empty snapshot cache keyed by node id.
func NewServer(opts ...Option) *Server {
	s := &Server{
		log:         slog.New(slog.DiscardHandler),
		grace:       DefaultGracePeriod,
		stopTimeout: DefaultStopTimeout,
		changed:     make(chan struct{}, 1),
		nodes:       map[string]*node{},
		streams:     map[streamKey]*streamState{},
	}
	s.watchers = []chan struct{}{s.changed}
	for _, o := range opts {
		o(s)
	}
	s.cache = newConfigCache()
	s.names = newNameLists()
	s.secrets = cachev3.NewSnapshotCache(adsCacheMode, cachev3.IDHash{}, cpLogger{s.log})
	s.metrics = newMetrics(s)
	return s
}

// Serve serves xDS on lis until ctx is done: ADS (state of the world and
// delta) plus the per-type LDS, RDS, CDS, EDS and SDS services, with
// keepalive.
// When ctx is done it stops gracefully (streams end, then the listener
// closes), closing what remains after the stop timeout, and returns nil.
// It returns an error if the gRPC server fails. Serve may be called once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("serving xds: Serve called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	gopts := append([]grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.ForceServerCodecV2(newSharedCodec()),
	}, s.grpcOpts...)
	gs := grpc.NewServer(gopts...)
	// go-control-plane ends every stream loop when ctx is done.
	xs := serverv3.NewServer(ctx, newMuxCache(s.cache, s.secrets), &callbacks{s: s}, serverv3Logger(s.log))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, xs)
	for _, register := range s.services {
		register(gs)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- gs.Serve(lis) })
	wg.Go(func() { s.sweep(ctx) })
	s.log.Info("xds server listening", "addr", lis.Addr().String())

	select {
	case err := <-serveErr:
		cancel()
		gs.Stop()
		return fmt.Errorf("serving xds on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	wg.Go(func() {
		gs.GracefulStop()
		close(stopped)
	})
	timer := time.NewTimer(s.stopTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
	}
	s.log.Info("xds server stopped")
	return nil
}

// SetSnapshot assigns snap, labelled version (the compiler's version, e.g.
// "a1b2c3..."), to the node with id nodeID, and pushes it to the node's open
// watches. The node need not be connected: it gets the snapshot when it
// connects. snap must be consistent (Snapshot.Consistent) and every resource
// type that holds resources must carry a version, ideally a content hash of
// that type alone (docs/xds-conventions.md): the version label is mapped
// back from per-type versions when the node ACKs.
//
// snap is not copied and must not be modified afterwards; one snapshot may
// be shared by many nodes, and should be: its resources are marshalled
// once per snapshot, and nodes given the same *Snapshot share the bytes
// (resource TTLs are not used). If the cache fails to push the snapshot to an
// open watch (ctx done), the error is returned but the assignment stands.
func (s *Server) SetSnapshot(ctx context.Context, nodeID, version string, snap *cachev3.Snapshot) error {
	switch {
	case nodeID == "":
		return errors.New("assigning snapshot: node id is empty")
	case version == "":
		return fmt.Errorf("assigning snapshot to node %s: version label is empty", nodeID)
	}
	if err := s.cache.consistent(snap); err != nil {
		return fmt.Errorf("assigning snapshot %s to node %s: %w", version, nodeID, err)
	}
	a, err := newAssignment(version, snap)
	if err != nil {
		return fmt.Errorf("assigning snapshot %s to node %s: %w", version, nodeID, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		n = newNode(nodemeta.Workload{ID: nodeID}, time.Now())
		s.nodes[nodeID] = n
	}
	n.assign(a)
	if err := s.cache.SetSnapshot(ctx, nodeID, snap); err != nil {
		return fmt.Errorf("assigning snapshot %s to node %s: %w", version, nodeID, err)
	}
	return nil
}

// ClearSnapshot drops the node's assignment and signals Changed.
//
// A disconnected node is forgotten at once, with its snapshot. A connected
// node stays known with Assigned "" and keeps the snapshot it was last
// given in the cache until it disconnects and its grace period ends, or a
// new SetSnapshot replaces it: clearing it from the config cache would
// also drop the node's open watches, so a later
// SetSnapshot would never reach it on this stream.
func (s *Server) ClearSnapshot(nodeID string) {
	s.mu.Lock()
	n := s.nodes[nodeID]
	if n == nil {
		s.mu.Unlock()
		return
	}
	if n.streams == 0 {
		s.forgetLocked(nodeID)
	} else {
		n.clear()
	}
	s.mu.Unlock()
	s.signal()
}

// Changed returns a channel that receives a value after a node connected,
// disconnected, ACKed, NACKed or was forgotten. Signals coalesce (the
// channel has a buffer of one): a receiver re-reads Nodes. SetSnapshot does
// not signal; its caller knows. Changed has one receiver, the reconciler;
// other components take their own channel with Subscribe.
func (s *Server) Changed() <-chan struct{} { return s.changed }

// Subscribe returns a new channel that receives the same signals as
// Changed (coalesced, buffer of one), for a second consumer such as the
// certificate manager. It is never closed.
func (s *Server) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.wmu.Lock()
	s.watchers = append(s.watchers, ch)
	s.wmu.Unlock()
	return ch
}

// Collectors returns the server's Prometheus collectors, for the caller to
// register (the package uses no global registry):
//
//   - gitmesh_xds_connected_proxies: nodes with at least one open stream;
//   - gitmesh_xds_proxies{state}: known nodes (connected or within their
//     grace period) by SyncState;
//   - gitmesh_xds_nacks_total{type}: NACKs received, by resource type
//     (the type URL without "type.googleapis.com/").
func (s *Server) Collectors() []prometheus.Collector { return s.metrics.collectors() }

// signal notifies Changed and the subscribers without blocking.
func (s *Server) signal() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// sweep forgets nodes whose grace period has ended, until ctx is done.
func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval(s.grace))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if s.forgetExpired(now) {
				s.signal()
			}
		}
	}
}

// sweepInterval is a quarter of the grace period, within [10ms, 5s].
func sweepInterval(grace time.Duration) time.Duration {
	return min(max(grace/4, 10*time.Millisecond), 5*time.Second)
}

// forgetExpired forgets every node disconnected for at least the grace
// period and reports whether it forgot any.
func (s *Server) forgetExpired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	forgot := false
	for id, n := range s.nodes {
		if n.streams == 0 && now.Sub(n.disconnectedAt) >= s.grace {
			s.log.Info("forgetting disconnected node", "node_id", id, "disconnected_at", n.disconnectedAt)
			s.forgetLocked(id)
			forgot = true
		}
	}
	return forgot
}

// forgetLocked drops a node, its snapshot and its secrets. s.mu must be
// held and the node must have no open stream (so it has no open watch in
// the caches).
func (s *Server) forgetLocked(id string) {
	delete(s.nodes, id)
	s.cache.ClearSnapshot(id)
	s.secrets.ClearSnapshot(id)
}

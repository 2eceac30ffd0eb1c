// Package proxy is gitmesh's bundled L7 proxy: the data plane of the mesh.
//
// A Proxy announces its workload to the controller over ADS (aggregated
// xDS, state of the world), builds a complete immutable configuration from
// the listeners, routes, clusters and endpoints it receives (see
// docs/xds-conventions.md), and swaps it in atomically: an update is applied
// all at once or, when it cannot be applied, NACKed with an error_detail that
// names the resource and the field while the last good configuration keeps
// serving. It keeps serving when the controller is gone and reconnects with
// exponential backoff.
//
// Traffic is HTTP/1.1, h2c, HTTPS (TLS terminated with SNI-selected
// certificates) or raw TCP, per listener filter chain. HTTP routing follows
// Envoy's virtual host and route matching, with redirects, direct
// responses, rewrites, header mutations, retries, timeouts, mirroring and
// the fault and CORS filters; upstreams are balanced (round-robin, least
// request, random, ring hash, Maglev) over healthy endpoints honouring their
// weights, behind circuit breakers and outlier detection, through
// keep-alive connection pools (h2c when the cluster asks for HTTP/2).
// Between proxies traffic is mutual TLS as Istio's ISTIO_MUTUAL: upstream
// TLS per endpoint (transport_socket_matches), downstream TLS that
// requires and verifies client certificates, with certificates and roots
// from SDS secrets on the ADS stream that rotate without dropping
// connections, and the peer identity passed on in x-forwarded-client-cert.
// docs/xds-conventions.md lists every Envoy field the proxy honours. The
// admin server exposes /ready, /healthz, /metrics (Istio's standard metric
// names and labels) and /config_dump.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/credentials"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

// Defaults for the zero values of Config's tuning fields.
const (
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultWarmingTimeout = 15 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
	DefaultDNSRefreshRate = 5 * time.Second
	DefaultMirrorTimeout  = config.DefaultRouteTimeout
)

// Config configures a Proxy.
type Config struct {
	// XDSAddr is the controller's ADS address, host:port. Required.
	XDSAddr string
	// XDSCredentials secure the ADS connection (a locked control plane:
	// xdsauth.Joiner's mTLS credentials). nil dials without TLS.
	XDSCredentials credentials.TransportCredentials
	// Workload is who this proxy is: node id, service, namespace, role,
	// labels and the addresses it listens on (see api/nodemeta). ID is
	// required.
	Workload nodemeta.Workload
	// Logger receives the proxy's structured logs. If nil, logs are
	// discarded.
	Logger *slog.Logger

	// BackoffInitial is the delay before the first reconnect after the ADS
	// stream breaks; it doubles on each failure up to BackoffMax and resets
	// once a stream delivers a response. Default DefaultBackoffInitial (100ms).
	BackoffInitial time.Duration
	// BackoffMax caps the reconnect delay. Default DefaultBackoffMax (5s).
	BackoffMax time.Duration
	// WarmingTimeout is how long an accepted update waits for the route
	// configurations, endpoints and clusters it references before it is
	// applied without them (Envoy's initial_fetch_timeout): missing route
	// configurations and endpoints are treated as empty, routes to a
	// missing cluster answer 503 (flag NC) and TCP connections to one are
	// closed. Meanwhile a new listener's address is bound but refuses
	// connections, and a listener being updated serves its applied
	// configuration. Default DefaultWarmingTimeout (15s).
	WarmingTimeout time.Duration
	// DrainTimeout is how long a removed listener, or every listener when
	// Run returns, waits for in-flight requests before its connections are
	// closed. Default DefaultDrainTimeout (5s).
	DrainTimeout time.Duration
	// DNSRefreshRate is how often STRICT_DNS clusters re-resolve their
	// addresses when the cluster sets no dns_refresh_rate. Default
	// DefaultDNSRefreshRate (5s, as Envoy).
	DNSRefreshRate time.Duration
	// MirrorTimeout caps how long a shadow request (a route's
	// request_mirror_policies) may hold one of the proxy's mirror slots:
	// a shadow gets its route's timeout, but never more than this, even
	// when the route disables its timeout, so a hung mirror backend
	// cannot hold every slot. Default DefaultMirrorTimeout (15s, Envoy's
	// default route timeout).
	MirrorTimeout time.Duration
	// Resolver resolves STRICT_DNS cluster addresses. If nil,
	// net.DefaultResolver is used.
	Resolver *net.Resolver
}

// Proxy is the bundled L7 proxy. Create it with New and start it with Run.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	node    *corev3.Node
	metrics *metrics.Metrics
	local   metrics.LocalWorkload
	buffers *bufferPool
	mirrors *mirrorer

	// current is the applied configuration; nil until the first one. It is
	// the only thing the data plane reads, so one Store is one atomic swap.
	current atomic.Pointer[config.MeshConfig]
	// applied is current once the listeners it adds accept connections:
	// what Ready and /config_dump report. Between the two stores a new
	// listener's address is bound but not yet listening, so reporting
	// current would let a client dial it and be refused.
	applied atomic.Pointer[config.MeshConfig]
	// secrets are the accepted SDS secrets, read by TLS handshakes.
	secrets *mtls.SecretStore
	// lastNACK is the most recent rejected update, for /config_dump.
	lastNACK atomic.Pointer[nackRecord]

	listeners *listenerSet
	running   atomic.Bool
}

// New checks cfg, fills in defaults and returns a Proxy ready to Run.
func New(cfg Config) (*Proxy, error) {
	if cfg.XDSAddr == "" {
		return nil, errors.New("creating proxy: XDSAddr is empty")
	}
	if cfg.Workload.ID == "" {
		return nil, errors.New("creating proxy: Workload.ID is empty")
	}
	if _, err := nodemeta.FromNode(cfg.Workload.Node()); err != nil {
		return nil, fmt.Errorf("creating proxy: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	setDefault(&cfg.BackoffInitial, DefaultBackoffInitial)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.WarmingTimeout, DefaultWarmingTimeout)
	setDefault(&cfg.DrainTimeout, DefaultDrainTimeout)
	setDefault(&cfg.DNSRefreshRate, DefaultDNSRefreshRate)
	setDefault(&cfg.MirrorTimeout, DefaultMirrorTimeout)
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	log := cfg.Logger.With("node_id", cfg.Workload.ID)
	p := &Proxy{
		cfg:     cfg,
		log:     log,
		node:    cfg.Workload.Node(),
		metrics: metrics.NewMetrics(),
		local:   metrics.NewLocalWorkload(cfg.Workload),
		buffers: newBufferPool(),
		mirrors: newMirrorer(log, cfg.MirrorTimeout),
		secrets: &mtls.SecretStore{},
	}
	p.listeners = newListenerSet(log, cfg.DrainTimeout, p.handlerFor)
	return p, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Ready reports whether the proxy has applied a first full configuration.
func (p *Proxy) Ready() bool { return p.applied.Load() != nil }

// Run serves the admin endpoint at once, connects to the controller over
// ADS (reconnecting with backoff), binds listeners as they arrive and
// serves traffic until ctx is done. It then closes everything it opened,
// draining in-flight requests for at most DrainTimeout, and returns nil;
// it returns an error only when it cannot start (the admin address cannot
// be bound, XDSAddr is not a valid gRPC target). Run may be called once.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("running proxy: Run called twice")
	}
	var wg sync.WaitGroup
	defer wg.Wait()

	if addr := p.cfg.Workload.Admin; addr != "" {
		srv, ln, err := p.listenAdmin(addr)
		if err != nil {
			return err
		}
		wg.Go(func() { p.serveAdmin(ctx, srv, ln) })
	}

	wg.Go(func() { p.mirrors.Run(ctx) })

	a := newApplier(p)
	defer a.close()
	defer p.listeners.closeAll()

	return newADSClient(p, a).Run(ctx)
}

// handlerFor returns the connection and HTTP handler of the listener bound
// at addr. It reads the current configuration on every connection and
// request, so listener, route and cluster changes need no rebinding.
func (p *Proxy) handlerFor(addr string) connServer {
	return &listenerHandler{p: p, addr: addr}
}

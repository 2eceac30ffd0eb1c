package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// cluster is a built Cluster. Everything but dns's endpoint set is
// immutable once published.
type cluster struct {
	name string
	// missing marks a placeholder for a cluster that a route or TCP proxy
	// names but CDS has not delivered (see clusterRefs). Only name is
	// set: a request routed to it is answered 503 with flag NC, a TCP
	// connection is closed, a mirror to it is skipped.
	missing        bool
	http2          bool
	connectTimeout time.Duration
	service        serviceMeta
	lb             *lbConfig
	limits         breakerLimits
	outlier        *outlierConfig
	// maxRequestsPerConn is common_http_protocol_options
	// .max_requests_per_connection (HTTP/1.1 upstreams), 0 for none.
	maxRequestsPerConn uint32
	// idleTimeout is common_http_protocol_options.idle_timeout: how long
	// an idle upstream connection is kept. 0: the pool's default.
	idleTimeout time.Duration
	keepAlive   net.KeepAliveConfig
	// sockets are the transport_socket and transport_socket_matches; nil
	// is plaintext to every endpoint.
	sockets *upstreamSockets
	// originalDst marks an ORIGINAL_DST cluster (Istio's
	// PassthroughCluster): its one host is the original destination of
	// the downstream connection (see pick).
	originalDst bool
	// endpoints is the balanced set of a STATIC or EDS cluster.
	endpoints *endpointSet
	// dnsTargets are the inline addresses of a STRICT_DNS cluster.
	dnsTargets []dnsTarget
	dnsRefresh time.Duration

	// pool, dns, state, connSlots, metrics and series are attached by the applier
	// before publication.
	pool      connPool
	dns       *dnsResolver
	state     *clusterState
	connSlots chan struct{}
	metrics   *metrics
	// series caches the request metrics of this cluster's requests.
	series *seriesCache
}

// connPool is the connection pool the forwarding path attaches to a
// cluster (an *upstreamPool); the applier closes its idle connections when
// no cluster uses it any more.
type connPool interface {
	closeIdle()
}

// serviceMeta is the cluster's filter_metadata.istio.services[0].
type serviceMeta struct {
	host      string
	name      string
	namespace string
}

// pick returns an endpoint of the cluster chosen by its load balancer, or
// nil when it has no usable endpoint. pr may be nil.
func (c *cluster) pick(pr *pickRequest) *endpoint {
	if c.originalDst {
		// Envoy's ORIGINAL_DST cluster: the host is the address the
		// client dialled. A connection that was not redirected has none
		// (forwarding it to the proxy's own address would loop).
		if pr == nil || pr.origDst == "" {
			return nil
		}
		return &endpoint{addr: pr.origDst, weight: 1, state: &hostState{}}
	}
	return c.currentEndpoints().pick(pr)
}

// currentEndpoints is the endpoint set in use: the resolver's latest for a
// STRICT_DNS cluster.
func (c *cluster) currentEndpoints() *endpointSet {
	if c.dns != nil {
		return c.dns.current.Load()
	}
	return c.endpoints
}

// poolKey identifies a connection pool: a cluster keeps its pool (and its
// idle connections) across updates as long as these do not change.
type poolKey struct {
	cluster            string
	http2              bool
	connectTimeout     time.Duration
	maxRequestsPerConn uint32
	idleTimeout        time.Duration
	keepAlive          net.KeepAliveConfig
	// sockets is upstreamSockets.key: a pool holds connections of one
	// transport socket configuration per endpoint (its scheme tells TLS
	// and plaintext connections to one address apart). Secrets are not
	// part of it: a rotated certificate keeps the pool.
	sockets string
}

func (c *cluster) poolKey() poolKey {
	k := poolKey{cluster: c.name, http2: c.http2, connectTimeout: c.connectTimeout,
		maxRequestsPerConn: c.maxRequestsPerConn, idleTimeout: c.idleTimeout, keepAlive: c.keepAlive}
	if c.sockets != nil {
		k.sockets = c.sockets.key
	}
	return k
}

// dnsKey identifies a resolver: same targets, same refresh rate.
func (c *cluster) dnsKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s", c.name, c.dnsRefresh, c.lb.key())
	for _, t := range c.dnsTargets {
		fmt.Fprintf(&b, "|%s:%d/%d/%+v", t.host, t.port, t.weight, t.meta)
	}
	return b.String()
}

// upstreamPool is a cluster's keep-alive connection pool and the reverse
// proxy that uses it.
type upstreamPool struct {
	key       poolKey
	p         *Proxy
	transport *http.Transport
	// h1 sends an HTTP/1.1 pool's requests without a body (see
	// h1Eligible); nil for an h2 pool.
	h1 *h1Client
	// attempts sends a request with its route's retries: the
	// ReverseProxy's transport, used directly by forwardH1.
	attempts *attemptTransport
	proxy    *httputil.ReverseProxy
	// dial opens a plaintext connection (TLS runs over it in dialTLS).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// upstreamHeaderTimeout bounds the wait for an upstream's response headers
// once the request is sent: Envoy's default stream_idle_timeout (5 min),
// which ends a stream on which nothing happened for that long.
const upstreamHeaderTimeout = 5 * time.Minute

// maxIdleConnsPerHost bounds idle keep-alive connections per endpoint.
const maxIdleConnsPerHost = 128

func newUpstreamPool(p *Proxy, key poolKey) *upstreamPool {
	dialer := &net.Dialer{Timeout: key.connectTimeout, KeepAlive: 30 * time.Second}
	if key.keepAlive.Enable {
		dialer.KeepAliveConfig = key.keepAlive
	}
	dial := dialer.DialContext
	if key.maxRequestsPerConn > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countedConn{Conn: c}, nil
		}
	}
	idle := 90 * time.Second
	if key.idleTimeout > 0 {
		idle = key.idleTimeout
	}
	tr := &http.Transport{
		Proxy:       nil, // never an environment proxy
		DialContext: dial,
		// Envoy's connect_timeout covers the TLS handshake too.
		TLSHandshakeTimeout: key.connectTimeout,
		// The route timeout (the request's context) bounds most
		// exchanges; this bounds the wait for response headers of those
		// whose route disables it, as Envoy's stream_idle_timeout does.
		ResponseHeaderTimeout: upstreamHeaderTimeout,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idle,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through untouched
	}
	if key.http2 {
		// h2c to plaintext endpoints, h2 (ALPN) over TLS.
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		tr.Protocols.SetHTTP2(true)
		tr.ForceAttemptHTTP2 = true
	}
	pool := &upstreamPool{key: key, transport: tr, p: p, dial: dial}
	tr.DialTLSContext = pool.dialTLS
	if !key.http2 {
		pool.h1 = newH1Client(pool, idle, key.maxRequestsPerConn)
	}
	pool.attempts = &attemptTransport{inner: tr, h1: pool.h1, maxPerConn: key.maxRequestsPerConn}
	pool.proxy = &httputil.ReverseProxy{
		Rewrite:        pool.rewrite,
		Transport:      pool.attempts,
		BufferPool:     p.buffers,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.proxyError,
	}
	return pool
}

// poolOf returns the connection pool the applier attached to c, nil for
// none.
func poolOf(c *cluster) *upstreamPool {
	pool, _ := c.pool.(*upstreamPool)
	return pool
}

// closeIdle closes the pool's idle connections.
func (pool *upstreamPool) closeIdle() {
	pool.transport.CloseIdleConnections()
	if pool.h1 != nil {
		pool.h1.closeIdle()
	}
}

// dnsTarget is one inline address of a STRICT_DNS cluster.
type dnsTarget struct {
	host   string
	port   int
	weight uint32
	meta   endpointMeta
}

// dnsResolver keeps a STRICT_DNS cluster's endpoints resolved. Its
// goroutine is owned by the applier, which stops it when no applied
// configuration uses it any more.
type dnsResolver struct {
	key      string
	targets  []dnsTarget
	lb       *lbConfig
	cs       *clusterState
	resolver *net.Resolver
	log      *slog.Logger
	// current is the last resolved set; never nil.
	current atomic.Pointer[endpointSet]
	// last is the last successful answer per target, used when a
	// re-resolution fails (only the resolver goroutine touches it after
	// start returns).
	last   [][]string
	cancel context.CancelFunc
	done   chan struct{}
}

// dnsFirstTimeout bounds the synchronous first resolution of a new
// STRICT_DNS cluster, done before the configuration that uses it is
// published.
const dnsFirstTimeout = 2 * time.Second

// startDNSResolver resolves the targets once (bounded by dnsFirstTimeout),
// then re-resolves every refresh until ctx is done or stop is called.
func startDNSResolver(ctx context.Context, log *slog.Logger, res *net.Resolver, c *cluster, refresh time.Duration) *dnsResolver {
	if c.dnsRefresh > 0 {
		refresh = c.dnsRefresh
	}
	r := &dnsResolver{
		key: c.dnsKey(), targets: c.dnsTargets, lb: c.lb, cs: c.state, resolver: res,
		log:  log.With("cluster", c.name),
		last: make([][]string, len(c.dnsTargets)),
		done: make(chan struct{}),
	}
	r.current.Store(&endpointSet{})
	firstCtx, cancelFirst := context.WithTimeout(ctx, dnsFirstTimeout)
	r.resolve(firstCtx)
	cancelFirst()
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.resolve(ctx)
			}
		}
	}()
	return r
}

// resolve looks every target up and publishes the new endpoint set. A
// failed lookup keeps that target's previous addresses.
func (r *dnsResolver) resolve(ctx context.Context) {
	var eps []*endpoint
	var weights []uint32
	for i, t := range r.targets {
		addrs := []string{t.host}
		if net.ParseIP(t.host) == nil {
			got, err := r.resolver.LookupHost(ctx, t.host)
			if err != nil {
				r.log.Warn("resolving STRICT_DNS address", "host", t.host, "error", err)
				got = r.last[i]
			}
			addrs = got
		}
		addrs = slices.Clone(addrs)
		slices.Sort(addrs)
		r.last[i] = addrs
		for _, a := range addrs {
			eps = append(eps, &endpoint{addr: net.JoinHostPort(a, strconv.Itoa(t.port)), meta: t.meta})
			weights = append(weights, t.weight)
		}
	}
	set := newBalancedSet(eps, weights, r.lb)
	if r.cs != nil {
		r.cs.adopt(eps, true)
		set.cs = r.cs
	}
	r.current.Store(set)
}

// stop ends the resolver goroutine and waits for it.
func (r *dnsResolver) stop() {
	r.cancel()
	<-r.done
}

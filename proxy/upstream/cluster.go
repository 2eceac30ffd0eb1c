package upstream

import (
	"context"
	"fmt"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Cluster is a built Cluster. Everything but dns's endpoint set is
// immutable once published.
type Cluster struct {
	Name string
	// Missing marks a placeholder for a cluster that a route or TCP proxy
	// names but CDS has not delivered (see clusterRefs). Only name is
	// set: a request routed to it is answered 503 with flag NC, a TCP
	// connection is closed, a mirror to it is skipped.
	Missing bool
	// HTTP2 speaks HTTP/2 to the endpoints (http2_protocol_options).
	HTTP2          bool
	ConnectTimeout time.Duration
	// Service is the destination service, for metric labels.
	Service ServiceMeta
	// LB is lb_policy and its config (nil: round robin); Limits the
	// circuit breaker thresholds; Outlier is outlier_detection (nil: none).
	LB      *LBConfig
	Limits  BreakerLimits
	Outlier *OutlierConfig
	// MaxRequestsPerConn is common_http_protocol_options
	// .max_requests_per_connection (HTTP/1.1 upstreams), 0 for none.
	MaxRequestsPerConn uint32
	// IdleTimeout is common_http_protocol_options.idle_timeout: how long
	// an idle upstream connection is kept. 0: the pool's default.
	IdleTimeout time.Duration
	// KeepAlive is upstream_connection_options.tcp_keepalive.
	KeepAlive net.KeepAliveConfig
	// Sockets are the transport_socket and transport_socket_matches; nil
	// is plaintext to every endpoint.
	Sockets *UpstreamSockets
	// OriginalDst marks an ORIGINAL_DST cluster (Istio's
	// PassthroughCluster): its one host is the original destination of
	// the downstream connection (see pick).
	OriginalDst bool
	// Endpoints is the balanced set of a STATIC or EDS cluster.
	Endpoints *EndpointSet
	// DNSTargets are the inline addresses of a STRICT_DNS cluster.
	DNSTargets []DNSTarget
	// DNSRefresh is dns_refresh_rate.
	DNSRefresh time.Duration

	// pool, dns, state, connSlots, metrics and series are attached by the applier
	// before publication.
	Pool ConnPool
	// DNS resolves DNSTargets (STRICT_DNS only); State is the live state
	// shared with earlier configurations; ConnSlots is the HTTP/1 connection
	// semaphore (nil: unlimited); Metrics records breaker and outlier events.
	DNS       *DNSResolver
	State     *ClusterState
	ConnSlots chan struct{}
	Metrics   *metrics.Metrics
	// Series caches the request metrics of this cluster's requests.
	Series *metrics.SeriesCache
}

// ConnPool is the connection pool the forwarding path attaches to a
// cluster (an *upstreamPool); the applier closes its idle connections when
// no cluster uses it any more.
type ConnPool interface {
	CloseIdle()
}

// ServiceMeta is the cluster's filter_metadata.istio.services[0].
type ServiceMeta struct {
	// Host is the service's hostname; Name and Namespace its parts.
	Host      string
	Name      string
	Namespace string
}

// Pick returns an endpoint of the cluster chosen by its load balancer, or
// nil when it has no usable endpoint. pr may be nil.
func (c *Cluster) Pick(pr *PickRequest) *Endpoint {
	if c.OriginalDst {
		// Envoy's ORIGINAL_DST cluster: the host is the address the
		// client dialled. A connection that was not redirected has none
		// (forwarding it to the proxy's own address would loop).
		if pr == nil || pr.OrigDst == "" {
			return nil
		}
		return &Endpoint{Addr: pr.OrigDst, weight: 1, State: &HostState{}}
	}
	return c.currentEndpoints().Pick(pr)
}

// currentEndpoints is the endpoint set in use: the resolver's latest for a
// STRICT_DNS cluster.
func (c *Cluster) currentEndpoints() *EndpointSet {
	if c.DNS != nil {
		return c.DNS.Current.Load()
	}
	return c.Endpoints
}

// PoolKey identifies a connection pool: a cluster keeps its pool (and its
// idle connections) across updates as long as these do not change.
type PoolKey struct {
	cluster            string
	HTTP2              bool
	ConnectTimeout     time.Duration
	MaxRequestsPerConn uint32
	IdleTimeout        time.Duration
	KeepAlive          net.KeepAliveConfig
	// sockets is upstreamSockets.key: a pool holds connections of one
	// transport socket configuration per endpoint (its scheme tells TLS
	// and plaintext connections to one address apart). Secrets are not
	// part of it: a rotated certificate keeps the pool.
	sockets string
}

// PoolKey returns the key of the cluster's connection pool.
func (c *Cluster) PoolKey() PoolKey {
	k := PoolKey{cluster: c.Name, HTTP2: c.HTTP2, ConnectTimeout: c.ConnectTimeout,
		MaxRequestsPerConn: c.MaxRequestsPerConn, IdleTimeout: c.IdleTimeout, KeepAlive: c.KeepAlive}
	if c.Sockets != nil {
		k.sockets = c.Sockets.Key
	}
	return k
}

// DNSKey identifies a resolver: same targets, same refresh rate.
func (c *Cluster) DNSKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s", c.Name, c.DNSRefresh, c.LB.key())
	for _, t := range c.DNSTargets {
		fmt.Fprintf(&b, "|%s:%d/%d/%+v", t.Host, t.Port, t.Weight, t.Meta)
	}
	return b.String()
}

// DNSTarget is one inline address of a STRICT_DNS cluster.
type DNSTarget struct {
	// Host and Port are the address to resolve; Weight and Meta are given
	// to every address it resolves to.
	Host   string
	Port   int
	Weight uint32
	Meta   metrics.EndpointMeta
}

// DNSResolver keeps a STRICT_DNS cluster's endpoints resolved. Its
// goroutine is owned by the applier, which stops it when no applied
// configuration uses it any more.
type DNSResolver struct {
	key      string
	targets  []DNSTarget
	lb       *LBConfig
	cs       *ClusterState
	resolver *net.Resolver
	log      *slog.Logger
	// Current is the last resolved set; never nil.
	Current atomic.Pointer[EndpointSet]
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

// StartDNSResolver resolves the targets once (bounded by dnsFirstTimeout),
// then re-resolves every refresh until ctx is done or stop is called.
func StartDNSResolver(ctx context.Context, log *slog.Logger, res *net.Resolver, c *Cluster, refresh time.Duration) *DNSResolver {
	if c.DNSRefresh > 0 {
		refresh = c.DNSRefresh
	}
	r := &DNSResolver{
		key: c.DNSKey(), targets: c.DNSTargets, lb: c.LB, cs: c.State, resolver: res,
		log:  log.With("cluster", c.Name),
		last: make([][]string, len(c.DNSTargets)),
		done: make(chan struct{}),
	}
	r.Current.Store(&EndpointSet{})
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
func (r *DNSResolver) resolve(ctx context.Context) {
	var eps []*Endpoint
	var weights []uint32
	for i, t := range r.targets {
		addrs := []string{t.Host}
		if net.ParseIP(t.Host) == nil {
			got, err := r.resolver.LookupHost(ctx, t.Host)
			if err != nil {
				r.log.Warn("resolving STRICT_DNS address", "host", t.Host, "error", err)
				got = r.last[i]
			}
			addrs = got
		}
		addrs = slices.Clone(addrs)
		slices.Sort(addrs)
		r.last[i] = addrs
		for _, a := range addrs {
			eps = append(eps, &Endpoint{Addr: net.JoinHostPort(a, strconv.Itoa(t.Port)), Meta: t.Meta})
			weights = append(weights, t.Weight)
		}
	}
	set := NewBalancedSet(eps, weights, r.lb)
	if r.cs != nil {
		r.cs.Adopt(eps, true)
		set.ClusterState = r.cs
	}
	r.Current.Store(set)
}

// Stop ends the resolver goroutine and waits for it.
func (r *DNSResolver) Stop() {
	r.cancel()
	<-r.done
}

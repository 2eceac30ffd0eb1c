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
	name           string
	http2          bool
	connectTimeout time.Duration
	service        serviceMeta
	// endpoints is the balanced set of a STATIC or EDS cluster.
	endpoints *endpointSet
	// dnsTargets are the inline addresses of a STRICT_DNS cluster.
	dnsTargets []dnsTarget
	dnsRefresh time.Duration

	// pool and dns are attached by the applier before publication.
	pool *upstreamPool
	dns  *dnsResolver
}

// serviceMeta is the cluster's filter_metadata.istio.services[0].
type serviceMeta struct {
	host      string
	name      string
	namespace string
}

// pick returns the next endpoint of the cluster, or nil when it has no
// healthy endpoint.
func (c *cluster) pick() *endpoint {
	if c.dns != nil {
		return c.dns.current.Load().pick()
	}
	return c.endpoints.pick()
}

// poolKey identifies a connection pool: a cluster keeps its pool (and its
// idle connections) across updates as long as these do not change.
type poolKey struct {
	cluster        string
	http2          bool
	connectTimeout time.Duration
}

func (c *cluster) poolKey() poolKey {
	return poolKey{cluster: c.name, http2: c.http2, connectTimeout: c.connectTimeout}
}

// dnsKey identifies a resolver: same targets, same refresh rate.
func (c *cluster) dnsKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s", c.name, c.dnsRefresh)
	for _, t := range c.dnsTargets {
		fmt.Fprintf(&b, "|%s:%d/%d/%+v", t.host, t.port, t.weight, t.meta)
	}
	return b.String()
}

// upstreamPool is a cluster's keep-alive connection pool and the reverse
// proxy that uses it.
type upstreamPool struct {
	key       poolKey
	transport *http.Transport
	proxy     *httputil.ReverseProxy
}

// maxIdleConnsPerHost bounds idle keep-alive connections per endpoint.
const maxIdleConnsPerHost = 128

func newUpstreamPool(p *Proxy, key poolKey) *upstreamPool {
	dialer := &net.Dialer{Timeout: key.connectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           dialer.DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through untouched
	}
	if key.http2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return &upstreamPool{
		key:       key,
		transport: tr,
		proxy: &httputil.ReverseProxy{
			Rewrite:        rewrite,
			Transport:      tr,
			BufferPool:     p.buffers,
			ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
			ModifyResponse: modifyResponse,
			ErrorHandler:   p.proxyError,
		},
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
		key: c.dnsKey(), targets: c.dnsTargets, resolver: res,
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
	r.current.Store(newEndpointSet(eps, weights))
}

// stop ends the resolver goroutine and waits for it.
func (r *dnsResolver) stop() {
	r.cancel()
	<-r.done
}

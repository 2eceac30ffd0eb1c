package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// countedConn is an upstream connection that counts the requests sent on
// it, for max_requests_per_connection.
type countedConn struct {
	net.Conn
	uses atomic.Uint32
}

// limitRequestsPerConn marks req so that, when the transport hands it a
// connection that reaches max uses with it, it asks for "Connection: close"
// and the connection is retired after the response (HTTP/1.1).
func limitRequestsPerConn(req *http.Request, max uint32) *http.Request {

	h := req.Header
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		conn := info.Conn
		if tc, ok := conn.(*tls.Conn); ok {
			conn = tc.NetConn()
		}
		if cc, ok := conn.(*countedConn); ok && cc.uses.Add(1) >= max {
			h.Set("Connection", "close")
		}
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}

// upstreamPool is a cluster's keep-alive connection pool and the reverse
// proxy that uses it.
type upstreamPool struct {
	key       upstream.PoolKey
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

func newUpstreamPool(p *Proxy, key upstream.PoolKey) *upstreamPool {
	dialer := &net.Dialer{Timeout: key.ConnectTimeout, KeepAlive: 30 * time.Second}
	if key.KeepAlive.Enable {
		dialer.KeepAliveConfig = key.KeepAlive
	}
	dial := dialer.DialContext
	if key.MaxRequestsPerConn > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countedConn{Conn: c}, nil
		}
	}
	idle := 90 * time.Second
	if key.IdleTimeout > 0 {
		idle = key.IdleTimeout
	}
	tr := &http.Transport{
		Proxy:       nil,
		DialContext: dial,

		TLSHandshakeTimeout: key.ConnectTimeout,

		ResponseHeaderTimeout: upstreamHeaderTimeout,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idle,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	if key.HTTP2 {

		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		tr.Protocols.SetHTTP2(true)
		tr.ForceAttemptHTTP2 = true
	}
	pool := &upstreamPool{key: key, transport: tr, p: p, dial: dial}
	tr.DialTLSContext = pool.dialTLS
	if !key.HTTP2 {
		pool.h1 = newH1Client(pool, idle, key.MaxRequestsPerConn)
	}
	pool.attempts = &attemptTransport{inner: tr, h1: pool.h1, maxPerConn: key.MaxRequestsPerConn}
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
func poolOf(c *upstream.Cluster) *upstreamPool {
	pool, _ := c.Pool.(*upstreamPool)
	return pool
}

// CloseIdle closes the pool's idle connections.
func (pool *upstreamPool) CloseIdle() {
	pool.transport.CloseIdleConnections()
	if pool.h1 != nil {
		pool.h1.CloseIdle()
	}
}

// dialTLS is the pool transport's DialTLSContext: it dials and handshakes
// with the TLS context upstreamRequest chose.
func (pool *upstreamPool) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	td, _ := ctx.Value(upstream.TLSDialKey{}).(*upstream.TLSDial)
	if td == nil || td.Addr != addr {
		return nil, &tlsHandshakeError{addr: addr, err: errors.New("no transport socket chosen for this endpoint")}
	}
	raw, err := pool.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return pool.p.clientHandshake(ctx, raw, addr, td.TLS, pool.key.HTTP2, pool.key.ConnectTimeout)
}

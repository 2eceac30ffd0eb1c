package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// Response flags, as Envoy and Istio name them.
const (
	flagNone             = "-"
	flagNoRoute          = "NR"
	flagNoHealthyUp      = "UH"
	flagUpstreamConnFail = "UF"
	flagUpstreamTimeout  = "UT"
	flagUpstreamReset    = "UC"
	flagDownstreamClosed = "DC"
)

// listenerHandler serves the requests of one bound listener address.
type listenerHandler struct {
	p    *Proxy
	addr string
}

// requestState travels with a request through the reverse proxy (as a
// context value) and collects what the metrics need.
type requestState struct {
	lc       *listenerConfig
	route    *route
	cluster  *cluster
	endpoint *endpoint
	timedOut func() bool
	code     int
	flags    string
}

type requestStateKey struct{}

func stateOf(r *http.Request) *requestState {
	rs, _ := r.Context().Value(requestStateKey{}).(*requestState)
	return rs
}

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rs := &requestState{flags: flagNone}
	defer func() { h.p.observe(r, rs, time.Since(start)) }()

	cfg := h.p.current.Load()
	if cfg != nil {
		rs.lc = cfg.listeners[h.addr]
	}
	if rs.lc == nil {
		rs.code, rs.flags = http.StatusNotFound, flagNoRoute
		http.Error(w, "listener not configured", rs.code)
		return
	}
	var vh *virtualHost
	if rs.lc.routes != nil {
		vh = rs.lc.routes.findVirtualHost(r.Host)
	}
	if vh != nil {
		rs.route = vh.findRoute(r)
	}
	if rs.route == nil {
		rs.code, rs.flags = http.StatusNotFound, flagNoRoute
		w.WriteHeader(rs.code)
		return
	}
	rs.cluster = rs.route.pickCluster()
	rs.endpoint = rs.cluster.pick()
	if rs.endpoint == nil {
		rs.code, rs.flags = http.StatusServiceUnavailable, flagNoHealthyUp
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(rs.code)
		io.WriteString(w, "no healthy upstream")
		return
	}
	ctx := context.WithValue(r.Context(), requestStateKey{}, rs)
	if rs.route.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rs.route.timeout)
		defer cancel()
		rs.timedOut = func() bool { return errors.Is(ctx.Err(), context.DeadlineExceeded) }
	}
	rs.cluster.pool.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// rewrite points the outgoing request at the picked endpoint, keeping the
// Host header, and adds x-forwarded-* and x-request-id as Envoy does.
func rewrite(pr *httputil.ProxyRequest) {
	rs := stateOf(pr.In)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = rs.endpoint.addr
	if p := rs.route.prefixRewrite; p != "" && rs.route.match.kind == pathPrefix {
		out.URL.Path = p + strings.TrimPrefix(out.URL.Path, rs.route.match.value)
		out.URL.RawPath = ""
	}
	if h := rs.route.hostRewrite; h != "" {
		out.Host = h
	}
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	if out.Header.Get("X-Request-Id") == "" {
		out.Header.Set("X-Request-Id", newRequestID())
	}
}

// modifyResponse records the upstream status code.
func modifyResponse(resp *http.Response) error {
	if rs := stateOf(resp.Request); rs != nil {
		rs.code = resp.StatusCode
	}
	return nil
}

// proxyError answers a failed upstream exchange like Envoy: 503 with UF when
// the connection could not be made, 504 with UT on route timeout, 503 with
// UC when the upstream reset; nothing when the client went away (DC).
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	rs := stateOf(r)
	code, flag, body := http.StatusServiceUnavailable, flagUpstreamReset,
		"upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	var opErr *net.OpError
	switch {
	case rs != nil && rs.timedOut != nil && rs.timedOut():
		code, flag, body = http.StatusGatewayTimeout, flagUpstreamTimeout, "upstream request timeout"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		code, flag = 0, flagDownstreamClosed
	case errors.As(err, &opErr) && opErr.Op == "dial":
		flag = flagUpstreamConnFail
		body = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	}
	if rs != nil {
		rs.code, rs.flags = code, flag
	}
	p.log.Debug("upstream request failed", "authority", r.Host, "response_flags", flag, "error", err)
	if code == 0 {
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// newRequestID returns a random UUID (version 4), as Envoy's x-request-id.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// bufferPool recycles the reverse proxy's copy buffers.
type bufferPool struct{ pool sync.Pool }

var _ httputil.BufferPool = (*bufferPool)(nil)

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
}

// Get returns a 32 KiB buffer.
func (b *bufferPool) Get() []byte { return *(b.pool.Get().(*[]byte)) }

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

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
	"net/url"
	"strings"
	"sync"
	"time"
)

// listenerHandler serves the requests (and accepts the connections) of one
// bound listener address.
type listenerHandler struct {
	p    *Proxy
	addr string
}

// requestState travels with a request through the reverse proxy (as a
// context value) and collects what the metrics need.
type requestState struct {
	lc       *listenerConfig
	route    *route
	wc       *weightedCluster
	cluster  *cluster
	endpoint *endpoint
	// activeEndpoint is the endpoint whose active-request count the final
	// attempt raised; the handler lowers it when the exchange ends.
	activeEndpoint *endpoint
	// perTryCancel ends the final attempt's per-try timeout context.
	perTryCancel context.CancelFunc
	// deadline is when the route timeout fires; zero for none.
	deadline time.Time
	// hash is the hash-policy key for RING_HASH and MAGLEV clusters.
	hash    uint64
	hasHash bool
	// setCookie is a Set-Cookie the response carries (generated hash
	// cookie); corsOrigin is the allowed Origin of a CORS request.
	setCookie  string
	corsOrigin string
	// origDst is the original destination of a redirected downstream
	// connection ("" when it was not redirected), for ORIGINAL_DST
	// clusters.
	origDst string
	// body is the buffered request body (routes with mirrors);
	// replayable is true when the request can be sent again (retries,
	// mirrors) as it is: it has no body, or body holds it.
	body       []byte
	replayable bool
	// replay is a streamed body kept for retries (routes with a retry
	// policy and no mirrors); nil for none.
	replay *replayBody
	code   int
	flags  responseFlags
	// sec is the exchange's TLS identity, for the principal labels.
	sec connSecurity
	// downstream is the client's response writer while forwardH1 sends
	// the request, for informational responses; nil otherwise.
	downstream http.ResponseWriter
	// telemetry is the request's spans and access log record; nil when
	// its connection manager has neither.
	telemetry *reqTelemetry
}

type requestStateKey struct{}

func stateOf(r *http.Request) *requestState {
	rs, _ := r.Context().Value(requestStateKey{}).(*requestState)
	return rs
}

// finishHeaders applies what the route adds to every response it
// produces: response header mutations, CORS headers and a generated
// cookie. It runs on upstream responses and on the router's own replies.
func (rs *requestState) finishHeaders(h http.Header) {
	if rt := rs.route; rt != nil {
		rt.headers.applyResponse(rs.wc, h)
		if rs.corsOrigin != "" && rt.cors != nil {
			rt.cors.decorate(h, rs.corsOrigin)
		}
	}
	if rs.setCookie != "" {
		h.Add("Set-Cookie", rs.setCookie)
	}
}

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rs := &requestState{}
	defer func() { h.p.observe(r, rs, time.Since(start)) }()

	cfg := h.p.current.Load()
	ci := connInfoOf(r.Context())
	rs.origDst = ci.origDst
	if cfg != nil {
		addr := h.addr
		if ci.listener != "" {
			addr = ci.listener // handed off by use_original_dst
		}
		rs.lc = cfg.listeners[addr]
	}
	var hc *httpChain
	if rs.lc != nil {
		hc = rs.lc.httpChainFor(r)
	}
	if hc == nil {
		// No chain serves this connection any more (its filter chain was
		// removed, e.g. a STRICT PeerAuthentication dropped the plain-text
		// chain): answer and close it, as Envoy drains connections of a
		// removed filter chain.
		rs.code, rs.flags = http.StatusNotFound, flagNoRoute
		w.Header().Set("Connection", "close")
		http.Error(w, "listener not configured", rs.code)
		return
	}
	if hc.telemetry != nil {
		w = hc.telemetry.begin(h.p, w, r, rs, start)
		defer rs.telemetry.end(r, rs)
	}
	if rs.lc.inbound {
		rs.sec = h.p.downstreamSecurity(r.TLS, hc.tls)
	}
	hc.xfcc.apply(r.Header, r.TLS, func() []string { return hc.tls.localURIs(h.p.secrets) })
	if len(hc.auth) > 0 {
		var ok bool
		if r, ok = h.p.authorize(w, r, rs, hc); !ok {
			return
		}
	}
	var vh *virtualHost
	if hc.routes != nil {
		host := r.Host
		if host == "" {
			// HTTP/1.0 without a Host header: the address the client
			// dialled, as a request by IP would carry it.
			host = rs.origDst
		}
		vh = hc.routes.findVirtualHost(host)
	}
	if vh != nil && vh.requireTLS && r.TLS == nil {
		httpsRedirect.serve(w, r, rs)
		return
	}
	if vh != nil {
		rs.route = vh.findRoute(r)
	}
	if rs.route == nil {
		rs.code, rs.flags = http.StatusNotFound, flagNoRoute
		w.WriteHeader(rs.code)
		return
	}
	rt := rs.route
	if rt.action == actionForward {
		// Picked before the filters so that fault aborts and CORS replies
		// report the route's destination, as Istio's stats do.
		rs.wc = rt.pickCluster()
		rs.cluster = rs.wc.cluster
	}
	for i := range hc.filters {
		f := &hc.filters[i]
		switch f.kind {
		case filterCORS:
			if rt.cors != nil && rt.cors.handle(w, r, rs) {
				return
			}
		case filterFault:
			fc := rt.fault
			if fc == nil && !rt.faultDisabled {
				fc = f.fault
			}
			if fc != nil && fc.inject(w, r, rs) {
				return
			}
		}
	}
	switch rt.action {
	case actionRedirect:
		rt.redirect.serve(w, r, rs)
	case actionDirect:
		rt.direct.serve(w, rs)
	default:
		h.p.forward(w, r, rs)
	}
}

// upstreamReset is Envoy's local reply body prefix for failed exchanges.
const upstreamReset = "upstream connect error or disconnect/reset before headers. reset reason: "

// forward sends a request to the route's cluster: circuit breakers, load
// balancing (with the route's hash policy), then the reverse proxy, whose
// transport retries.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rs *requestState) {
	rt := rs.route
	c := rs.cluster
	if c.missing {
		// Envoy's router: the route's cluster does not exist (yet).
		p.localReply(w, rs, rt.clusterNotFoundCode, flagNoClusterFound, "")
		return
	}
	ctx := r.Context()
	timeout := rt.timeout
	if rt.maxGRPCTimeout != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		timeout = 0
		if t, ok := grpcTimeout(r.Header.Get("Grpc-Timeout")); ok {
			timeout = t
		}
		if m := *rt.maxGRPCTimeout; m > 0 && (timeout == 0 || timeout > m) {
			timeout = m
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		rs.deadline = time.Now().Add(timeout)
	}
	slots, adm := c.admit(ctx)
	switch adm {
	case overflow:
		p.metrics.breakerOpen.WithLabelValues(c.name).Inc()
		p.localReply(w, rs, http.StatusServiceUnavailable, flagUpstreamOverflow, upstreamReset+"overflow")
		return
	case gaveUp:
		if r.Context().Err() != nil {
			rs.code, rs.flags = 0, rs.flags|flagDownstreamClosed
			return
		}
		p.localReply(w, rs, http.StatusGatewayTimeout, flagUpstreamTimeout, "upstream request timeout")
		return
	}
	defer c.release(slots)
	if c.lb.hashBased() {
		rs.hash, rs.hasHash = requestHash(rt.hashPolicies, r, rs)
	}
	pr := pickRequest{hash: rs.hash, hasHash: rs.hasHash, origDst: rs.origDst}
	rs.endpoint = c.pick(&pr)
	if rs.endpoint == nil {
		p.localReply(w, rs, http.StatusServiceUnavailable, flagNoHealthyUpstream, "no healthy upstream")
		return
	}
	switch {
	case len(rt.mirrors) > 0:
		bufferBody(r, rs)
	case rt.retry != nil:
		streamBody(r, rs)
	}
	defer func() {
		if e := rs.activeEndpoint; e != nil {
			e.state.active.Add(-1)
		}
		if rs.perTryCancel != nil {
			rs.perTryCancel()
		}
	}()
	if rt := rs.telemetry; rt != nil {
		rt.startUpstream(r, rs)
		defer rt.endUpstream(rs)
	}
	if p.forwardH1(ctx, w, r, rs) {
		return
	}
	ctx = context.WithValue(ctx, requestStateKey{}, rs)
	c.pool.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// canReplay reports whether a retry can send the request again.
func (rs *requestState) canReplay() bool {
	return rs.replayable || rs.replay != nil && rs.replay.replayable()
}

// localReply answers a request the router could not forward, as Envoy's
// local replies (plain text body, route response headers).
func (p *Proxy) localReply(w http.ResponseWriter, rs *requestState, code int, flag responseFlags, body string) {
	rs.code, rs.flags = code, rs.flags|flag
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	rs.finishHeaders(h)
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// rewrite points the outgoing request at the picked endpoint, keeping the
// Host header (unless rewritten), applies the route's path rewrites and
// request header mutations, adds x-forwarded-* and x-request-id as Envoy
// does, and queues shadow requests.
func (pool *upstreamPool) rewrite(pr *httputil.ProxyRequest) {
	rs := stateOf(pr.In)
	rewriteOut(pr.In, pr.Out, rs, pr.In.Header["X-Forwarded-For"])
	if len(rs.route.mirrors) > 0 {
		pool.p.mirror(pr.Out, rs)
	}
}

// rewriteOut is rewrite's work on the outgoing request out of in:
// priorXFF is the X-Forwarded-For the client sent, which out no longer
// holds.
func rewriteOut(in, out *http.Request, rs *requestState, priorXFF []string) {
	rt := rs.route
	// The scheme (TLS or not) and host are set per attempt by
	// attemptTransport (cluster.upstreamRequest).
	out.URL.Scheme = "http"
	out.URL.Host = rs.endpoint.addr
	switch {
	case rt.prefixRewrite != nil:
		esc := out.URL.EscapedPath()
		n := matchedPrefixLen(&rt.match, esc)
		setEscapedPath(out.URL, *rt.prefixRewrite+esc[n:])
	case rt.regexRewrite != nil:
		setEscapedPath(out.URL, rt.regexRewrite.re.ReplaceAllString(out.URL.EscapedPath(), rt.regexRewrite.sub))
	}
	switch {
	case rs.wc.hostRewrite != "":
		out.Host = rs.wc.hostRewrite
	case rt.hostRewrite != "":
		out.Host = rt.hostRewrite
	}
	setXForwarded(in, out, priorXFF)
	if out.Header.Get("X-Request-Id") == "" {
		out.Header.Set("X-Request-Id", newRequestID())
	}
	rt.headers.applyRequest(rs.wc, out.Header)
}

// setXForwarded sets X-Forwarded-For (priorXFF and the client's address),
// X-Forwarded-Host and X-Forwarded-Proto on out, as
// httputil.ProxyRequest.SetXForwarded does.
func setXForwarded(in, out *http.Request, priorXFF []string) {
	h := out.Header
	if clientIP, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if len(priorXFF) > 0 {
			clientIP = strings.Join(priorXFF, ", ") + ", " + clientIP
		}
		h.Set("X-Forwarded-For", clientIP)
	} else {
		h.Del("X-Forwarded-For")
	}
	h.Set("X-Forwarded-Host", in.Host)
	if in.TLS == nil {
		h.Set("X-Forwarded-Proto", "http")
	} else {
		h.Set("X-Forwarded-Proto", "https")
	}
}

// setEscapedPath sets a URL's path from its escaped form.
func setEscapedPath(u *url.URL, esc string) {
	if !strings.HasPrefix(esc, "/") {
		esc = "/" + esc
	}
	p, err := url.PathUnescape(esc)
	if err != nil {
		u.Path, u.RawPath = esc, ""
		return
	}
	u.Path, u.RawPath = p, esc
}

// modifyResponse records the upstream status code and applies the route's
// response headers.
func modifyResponse(resp *http.Response) error {
	if rs := stateOf(resp.Request); rs != nil {
		rs.upstreamResponse(resp)
	}
	return nil
}

// upstreamResponse records the upstream status code and identity and
// applies the route's response headers.
func (rs *requestState) upstreamResponse(resp *http.Response) {
	rs.code = resp.StatusCode
	if !rs.lc.inbound && resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		rs.sec.destination = firstURI(resp.TLS.PeerCertificates[0])
	}
	rs.finishHeaders(resp.Header)
}

// proxyError answers a failed upstream exchange like Envoy: 503 with UF when
// the connection could not be made, 504 with UT on route or per-try
// timeout, 503 with UH when a retry found no host, 503 with UC when the
// upstream reset; nothing when the client went away (DC).
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	p.upstreamError(w, r, stateOf(r), err)
}

// upstreamError is proxyError with the request's state; rs may be nil.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, rs *requestState, err error) {
	code, flag, body := http.StatusServiceUnavailable, flagUpstreamReset, upstreamReset+"connection termination"
	var opErr *net.OpError
	var hsErr *tlsHandshakeError
	switch {
	case errors.Is(err, errPerTryTimeout),
		rs != nil && !rs.deadline.IsZero() && !time.Now().Before(rs.deadline),
		errors.Is(r.Context().Err(), context.DeadlineExceeded):
		code, flag, body = http.StatusGatewayTimeout, flagUpstreamTimeout, "upstream request timeout"
	case r.Context().Err() != nil:
		code, flag = 0, flagDownstreamClosed
	case errors.Is(err, errNoHealthyUpstream):
		flag, body = flagNoHealthyUpstream, "no healthy upstream"
	case errors.As(err, &hsErr):
		// Envoy: "reset reason: connection failure, transport failure
		// reason: TLS_error:...".
		flag = flagUpstreamConnFail
		body = upstreamReset + "connection failure, transport failure reason: TLS error: " + hsErr.err.Error()
	case errors.As(err, &opErr) && opErr.Op == "dial":
		flag = flagUpstreamConnFail
		body = upstreamReset + "connection failure"
	}
	if rs != nil {
		rs.code, rs.flags = code, rs.flags|flag
	}
	p.log.Debug("upstream request failed", "authority", r.Host, "response_flags", flag.String(), "error", err)
	if code == 0 {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	if rs != nil {
		rs.finishHeaders(h)
	}
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

// copyBufferSize is the size of the reverse proxy's copy buffers.
const copyBufferSize = 32 * 1024

// bufferPool recycles the reverse proxy's copy buffers. It pools array
// pointers, which a returned slice converts back to without allocating
// (pooling a *[]byte would allocate a slice header on every Put).
type bufferPool struct{ pool sync.Pool }

var _ httputil.BufferPool = (*bufferPool)(nil)

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

// Get returns a 32 KiB buffer.
func (b *bufferPool) Get() []byte { return b.pool.Get().(*[copyBufferSize]byte)[:] }

// Put returns a buffer from Get to the pool; other buffers are dropped.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	b.pool.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

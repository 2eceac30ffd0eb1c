package proxy

import (
	"context"
	"errors"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"github.com/gitmesh/gitmesh/proxy/upstream"
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
	lc       *config.ListenerConfig
	route    *routing.Route
	wc       *routing.WeightedCluster
	cluster  *upstream.Cluster
	endpoint *upstream.Endpoint
	// activeEndpoint is the endpoint whose active-request count the final
	// attempt raised; the handler lowers it when the exchange ends.
	activeEndpoint *upstream.Endpoint
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
	flags  metrics.ResponseFlags
	// sec is the exchange's TLS identity, for the principal labels.
	sec metrics.ConnSecurity
	// downstream is the client's response writer while forwardH1 sends
	// the request, for informational responses; nil otherwise.
	downstream http.ResponseWriter
	// telemetry is the request's spans and access log record; nil when
	// its connection manager has neither.
	telemetry *telemetry.Request
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
		rt.Headers.ApplyResponse(rs.wc, h)
		if rs.corsOrigin != "" && rt.CORS != nil {
			rt.CORS.Decorate(h, rs.corsOrigin)
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
		rs.lc = cfg.Listeners[addr]
	}
	var hc *config.HTTPChain
	if rs.lc != nil {
		hc = rs.lc.HTTPChainFor(r)
	}
	if hc == nil {
		// No chain serves this connection any more (its filter chain was
		// removed, e.g. a STRICT PeerAuthentication dropped the plain-text
		// chain): answer and close it, as Envoy drains connections of a
		// removed filter chain.
		rs.code, rs.flags = http.StatusNotFound, metrics.FlagNoRoute
		w.Header().Set("Connection", "close")
		http.Error(w, "listener not configured", rs.code)
		return
	}
	if hc.Telemetry != nil {
		rs.telemetry, w = hc.Telemetry.Begin(w, r, start)
		defer rs.telemetry.End(rs)
	}
	if rs.lc.Inbound {
		rs.sec = h.p.downstreamSecurity(r.TLS, hc.TLS)
	}
	hc.XFCC.Apply(r.Header, r.TLS, func() []string { return hc.TLS.LocalURIs(h.p.secrets) })
	if len(hc.Auth) > 0 {
		var ok bool
		if r, ok = h.p.authorize(w, r, rs, hc); !ok {
			return
		}
	}
	var vh *routing.VirtualHost
	if hc.Routes != nil {
		host := r.Host
		if host == "" {
			// HTTP/1.0 without a Host header: the address the client
			// dialled, as a request by IP would carry it.
			host = rs.origDst
		}
		vh = hc.Routes.FindVirtualHost(host)
	}
	if vh != nil && vh.RequireTLS && r.TLS == nil {
		serveRedirect(routing.HTTPSRedirect, w, r, rs)
		return
	}
	if vh != nil {
		rs.route = vh.FindRoute(r)
	}
	if rs.route == nil {
		rs.code, rs.flags = http.StatusNotFound, metrics.FlagNoRoute
		w.WriteHeader(rs.code)
		return
	}
	rt := rs.route
	if rt.Action == routing.ActionForward {
		// Picked before the filters so that fault aborts and CORS replies
		// report the route's destination, as Istio's stats do.
		rs.wc = rt.PickCluster()
		rs.cluster = rs.wc.Cluster
	}
	for i := range hc.Filters {
		f := &hc.Filters[i]
		switch f.Kind {
		case config.FilterCORS:
			if rt.CORS != nil && serveCORS(rt.CORS, w, r, rs) {
				return
			}
		case config.FilterFault:
			fc := rt.Fault
			if fc == nil && !rt.FaultDisabled {
				fc = f.Fault
			}
			if fc != nil && injectFault(fc, w, r, rs) {
				return
			}
		}
	}
	switch rt.Action {
	case routing.ActionRedirect:
		serveRedirect(rt.Redirect, w, r, rs)
	case routing.ActionDirect:
		serveDirect(rt.Direct, w, rs)
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
	if c.Missing {
		// Envoy's router: the route's cluster does not exist (yet).
		p.localReply(w, rs, rt.ClusterNotFoundCode, metrics.FlagNoClusterFound, "")
		return
	}
	ctx := r.Context()
	timeout := rt.Timeout
	if rt.MaxGRPCTimeout != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		timeout = 0
		if t, ok := config.GRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
			timeout = t
		}
		if m := *rt.MaxGRPCTimeout; m > 0 && (timeout == 0 || timeout > m) {
			timeout = m
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		rs.deadline = time.Now().Add(timeout)
	}
	slots, adm := c.Admit(ctx)
	switch adm {
	case upstream.Overflow:
		p.metrics.BreakerOpen.WithLabelValues(c.Name).Inc()
		p.localReply(w, rs, http.StatusServiceUnavailable, metrics.FlagUpstreamOverflow, upstreamReset+"overflow")
		return
	case upstream.GaveUp:
		if r.Context().Err() != nil {
			rs.code, rs.flags = 0, rs.flags|metrics.FlagDownstreamClosed
			return
		}
		p.localReply(w, rs, http.StatusGatewayTimeout, metrics.FlagUpstreamTimeout, "upstream request timeout")
		return
	}
	defer c.Release(slots)
	if c.LB.HashBased() {
		rs.hash, rs.hasHash = requestHash(rt.HashPolicies, r, rs)
	}
	pr := upstream.PickRequest{Hash: rs.hash, HasHash: rs.hasHash, OrigDst: rs.origDst}
	rs.endpoint = c.Pick(&pr)
	if rs.endpoint == nil {
		p.localReply(w, rs, http.StatusServiceUnavailable, metrics.FlagNoHealthyUpstream, "no healthy upstream")
		return
	}
	switch {
	case len(rt.Mirrors) > 0:
		bufferBody(r, rs)
	case rt.Retry != nil:
		streamBody(r, rs)
	}
	defer func() {
		if e := rs.activeEndpoint; e != nil {
			e.State.Active.Add(-1)
		}
		if rs.perTryCancel != nil {
			rs.perTryCancel()
		}
	}()
	if rt := rs.telemetry; rt != nil {
		rt.StartUpstream(r, rs)
		defer rt.EndUpstream(rs)
	}
	if p.forwardH1(ctx, w, r, rs) {
		return
	}
	ctx = context.WithValue(ctx, requestStateKey{}, rs)
	poolOf(c).proxy.ServeHTTP(w, r.WithContext(ctx))
}

// canReplay reports whether a retry can send the request again.
func (rs *requestState) canReplay() bool {
	return rs.replayable || rs.replay != nil && rs.replay.replayable()
}

// localReply answers a request the router could not forward, as Envoy's
// local replies (plain text body, route response headers).
func (p *Proxy) localReply(w http.ResponseWriter, rs *requestState, code int, flag metrics.ResponseFlags, body string) {
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
	if len(rs.route.Mirrors) > 0 {
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
	out.URL.Host = rs.endpoint.Addr
	switch {
	case rt.PrefixRewrite != nil:
		esc := out.URL.EscapedPath()
		n := routing.MatchedPrefixLen(&rt.Match, esc)
		setEscapedPath(out.URL, *rt.PrefixRewrite+esc[n:])
	case rt.RegexRewrite != nil:
		setEscapedPath(out.URL, rt.RegexRewrite.Re.ReplaceAllString(out.URL.EscapedPath(), rt.RegexRewrite.Substitution))
	}
	switch {
	case rs.wc.HostRewrite != "":
		out.Host = rs.wc.HostRewrite
	case rt.HostRewrite != "":
		out.Host = rt.HostRewrite
	}
	setXForwarded(in, out, priorXFF)
	if out.Header.Get("X-Request-Id") == "" {
		out.Header.Set("X-Request-Id", telemetry.NewRequestID())
	}
	rt.Headers.ApplyRequest(rs.wc, out.Header)
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
	if !rs.lc.Inbound && resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		rs.sec.Destination = metrics.FirstURI(resp.TLS.PeerCertificates[0])
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
	code, flag, body := http.StatusServiceUnavailable, metrics.FlagUpstreamReset, upstreamReset+"connection termination"
	var opErr *net.OpError
	var hsErr *tlsHandshakeError
	switch {
	case errors.Is(err, errPerTryTimeout),
		rs != nil && !rs.deadline.IsZero() && !time.Now().Before(rs.deadline),
		errors.Is(r.Context().Err(), context.DeadlineExceeded):
		code, flag, body = http.StatusGatewayTimeout, metrics.FlagUpstreamTimeout, "upstream request timeout"
	case r.Context().Err() != nil:
		code, flag = 0, metrics.FlagDownstreamClosed
	case errors.Is(err, errNoHealthyUpstream):
		flag, body = metrics.FlagNoHealthyUpstream, "no healthy upstream"
	case errors.As(err, &hsErr):
		// Envoy: "reset reason: connection failure, transport failure
		// reason: TLS_error:...".
		flag = metrics.FlagUpstreamConnFail
		body = upstreamReset + "connection failure, transport failure reason: TLS error: " + hsErr.err.Error()
	case errors.As(err, &opErr) && opErr.Op == "dial":
		flag = metrics.FlagUpstreamConnFail
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

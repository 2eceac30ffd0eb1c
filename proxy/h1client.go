package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"
)

// h1Client is an HTTP/1.1 cluster pool's client for the common exchange:
// a request without a body, of an idempotent method, that asks for no
// protocol upgrade. It writes the request and reads the response on the
// calling goroutine over pooled keep-alive connections, where
// http.Transport hands each exchange to a connection's write and read
// goroutines (four goroutine switches and several channel operations per
// request). Every other request (bodies, upgrades, h2 clusters) goes
// through the pool's http.Transport, which also serves mirrors.
//
// Like http.Transport it keeps at most maxIdleConnsPerHost idle
// connections per endpoint and scheme, closes them after the pool's idle
// timeout, and sends a request again on a new connection when a reused one
// turns out to be closed before any response byte arrived (the request has
// no body and an idempotent method, so that is safe).
type h1Client struct {
	pool        *upstreamPool
	idleTimeout time.Duration
	// maxPerConn is max_requests_per_connection, 0 for none.
	maxPerConn uint32

	// mu protects idle.
	mu   sync.Mutex
	idle map[h1Key][]*h1Conn
}

// h1Key identifies the connections one request may use: the endpoint's
// address and whether they run TLS (the transport socket; see
// cluster.upstreamRequest).
type h1Key struct {
	tls  bool
	addr string
}

// h1Conn is one upstream connection of an h1Client. Only the goroutine
// that took it from the idle list uses it, except idleTimer's expiry,
// which closes it only after removing it from the idle list under mu.
type h1Conn struct {
	client *h1Client
	key    h1Key
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	// tlsState is the connection's TLS state (nil for plaintext), set
	// as resp.TLS like http.Transport does.
	tlsState *tls.ConnectionState
	uses     uint32
	// idleTimer closes the connection once it has been idle for the
	// client's idle timeout; created on the first put.
	idleTimer *time.Timer
}

// aLongTimeAgo is a deadline in the past, which interrupts pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

func newH1Client(pool *upstreamPool, idleTimeout time.Duration, maxPerConn uint32) *h1Client {
	return &h1Client{pool: pool, idleTimeout: idleTimeout, maxPerConn: maxPerConn, idle: map[h1Key][]*h1Conn{}}
}

// h1Eligible reports whether the h1Client may send req: no body, an
// idempotent method (so a request lost on a stale connection can be sent
// again), no upgrade.
func h1Eligible(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	_, upgrade := req.Header["Upgrade"]
	return !upgrade
}

// roundTrip sends req (see h1Eligible) to req.URL.Host over the scheme
// cluster.upstreamRequest chose. Informational (1xx) responses go to rs's
// downstream writer when it has one (forwardH1), else to the request's
// client trace.
func (h *h1Client) roundTrip(req *http.Request, rs *requestState) (*http.Response, error) {
	ctx := req.Context()
	key := h1Key{tls: req.URL.Scheme == "https", addr: req.URL.Host}
	for {
		pc, reused := h.get(key)
		if pc == nil {
			var err error
			if pc, err = h.dial(ctx, key); err != nil {
				return nil, err
			}
		}
		resp, err := pc.exchange(req, rs)
		if err == nil {
			return resp, nil
		}
		// A reused connection the upstream had closed while idle fails
		// before any response byte: send again on another one, as
		// http.Transport does for replayable requests.
		var nr *notReadError
		if !reused || ctx.Err() != nil || !errors.As(err, &nr) {
			return nil, err
		}
	}
}

// get takes the most recently used idle connection for key, if any.
func (h *h1Client) get(key h1Key) (*h1Conn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	conns := h.idle[key]
	if len(conns) == 0 {
		return nil, false
	}
	pc := conns[len(conns)-1]
	conns[len(conns)-1] = nil
	h.idle[key] = conns[:len(conns)-1]
	pc.idleTimer.Stop()
	return pc, true
}

// dial opens a connection for key with the pool's dialer (and TLS
// handshake).
func (h *h1Client) dial(ctx context.Context, key h1Key) (*h1Conn, error) {
	var conn net.Conn
	var err error
	if key.tls {
		conn, err = h.pool.dialTLS(ctx, "tcp", key.addr)
	} else {
		conn, err = h.pool.dial(ctx, "tcp", key.addr)
	}
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{client: h, key: key, conn: conn,
		br: bufio.NewReaderSize(conn, 4096), bw: bufio.NewWriterSize(conn, 4096)}
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		pc.tlsState = &st
	}
	return pc, nil
}

// put returns a connection whose exchange completed to the idle list, or
// closes it when the list is full.
func (h *h1Client) put(pc *h1Conn) {
	h.mu.Lock()
	conns := h.idle[pc.key]
	if len(conns) >= maxIdleConnsPerHost {
		h.mu.Unlock()
		pc.conn.Close()
		return
	}
	h.idle[pc.key] = append(conns, pc)
	if pc.idleTimer == nil {
		pc.idleTimer = time.AfterFunc(h.idleTimeout, pc.expire)
	} else {
		pc.idleTimer.Reset(h.idleTimeout)
	}
	h.mu.Unlock()
}

// expire closes an idle connection whose idle timeout passed, unless a
// request took it meanwhile.
func (pc *h1Conn) expire() {
	h := pc.client
	h.mu.Lock()
	conns := h.idle[pc.key]
	found := false
	for i, c := range conns {
		if c == pc {
			conns = append(conns[:i], conns[i+1:]...)
			found = true
			break
		}
	}
	if len(conns) == 0 {
		delete(h.idle, pc.key)
	} else {
		h.idle[pc.key] = conns
	}
	h.mu.Unlock()
	if found {
		pc.conn.Close()
	}
}

// CloseIdle closes every idle connection.
func (h *h1Client) CloseIdle() {
	h.mu.Lock()
	idle := h.idle
	h.idle = map[h1Key][]*h1Conn{}
	h.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			pc.idleTimer.Stop()
			pc.conn.Close()
		}
	}
}

// notReadError is an exchange that failed before any byte of a response
// was read.
type notReadError struct{ err error }

func (e *notReadError) Error() string { return e.err.Error() }
func (e *notReadError) Unwrap() error { return e.err }

// maxInformational bounds the 1xx responses read before the final one.
const maxInformational = 5

// exchange writes req and reads its response headers. The returned
// response's body hands the connection back (or closes it) once read to
// its end or closed. On error the connection is closed.
func (pc *h1Conn) exchange(req *http.Request, rs *requestState) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.conn.Close()
		return nil, err
	}
	pc.uses++
	closing := req.Close
	if m := pc.client.maxPerConn; m > 0 && pc.uses >= m {
		// max_requests_per_connection: this is the connection's last
		// request.
		req.Header.Set("Connection", "close")
		closing = true
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(&notReadError{err})
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(&notReadError{err})
	}
	// Envoy's stream_idle_timeout for the wait for response headers, as
	// the Transport's ResponseHeaderTimeout.
	pc.conn.SetReadDeadline(time.Now().Add(upstreamHeaderTimeout))
	if _, err := pc.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || isConnReset(err) {
			err = &notReadError{err}
		}
		return fail(err)
	}
	var resp *http.Response
	for n := 0; ; n++ {
		var err error
		if resp, err = http.ReadResponse(pc.br, req); err != nil {
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
		if n >= maxInformational {
			return fail(errors.New("too many 1xx informational responses"))
		}
		if rs != nil && rs.downstream != nil {
			forwardInformational(rs.downstream, code, resp.Header)
		} else if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	pc.conn.SetReadDeadline(time.Time{})
	if ctx.Err() != nil {
		// The context ended while the deadline was being cleared: restore
		// the interruption its AfterFunc may have set before.
		pc.conn.SetDeadline(aLongTimeAgo)
	}
	resp.TLS = pc.tlsState
	reusable := !closing && !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody || resp.Body == nil {
		pc.Release(stop, reusable)
		return resp, nil
	}
	resp.Body = &h1Body{pc: pc, body: resp.Body, stop: stop, reusable: reusable}
	return resp, nil
}

// Release ends an exchange: the connection goes back to the idle list when
// it is reusable and the request's context did not interrupt it, else it
// is closed.
func (pc *h1Conn) Release(stop func() bool, reusable bool) {
	if stop() && reusable {
		pc.client.put(pc)
		return
	}
	pc.conn.Close()
}

// isConnReset reports whether err is a connection reset or broken pipe,
// as a write or read on a connection the peer closed while idle fails.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// h1Body is an h1Client response's body: it releases the connection
// when read to its end, and closes it when closed before.
type h1Body struct {
	pc       *h1Conn
	body     io.ReadCloser
	stop     func() bool
	reusable bool
	done     bool
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
		b.pc.Release(b.stop, b.reusable && err == io.EOF)
	}
	return n, err
}

// Close implements io.Closer.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.pc.conn.Close()
	}
	return nil
}

package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/gitmesh/gitmesh/proxy/config"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connServer serves the connections of one bound address: HTTP requests
// (ServeHTTP) and, first, each accepted connection (serveConn).
type connServer interface {
	http.Handler
	// serveConn picks the connection's filter chain (inspecting a TLS
	// ClientHello when the chains match on it), terminates TLS when the
	// chain says so and returns the connection to serve as HTTP, or nil
	// when it served it itself (TCP proxy) or closed it. ctx ends when the
	// listener has drained.
	serveConn(ctx context.Context, c net.Conn) net.Conn
}

// listenerSet owns the proxy's traffic sockets. An address is bound
// ("reserved") as soon as an accepted LDS update names it, so an address
// that cannot be bound is NACKed, but it does not listen yet: while the
// listener warms (its route configurations or clusters have not arrived)
// a client connecting to it is refused at once rather than left in an
// accept queue nobody serves, as Envoy binds a warming listener and
// listens only once it is warm. The socket listens and serves when a
// configuration that uses it is swapped in; it is drained and closed once
// neither the applied configuration nor the accepted LDS update names it.
// An address that stays in the configuration keeps its socket and its
// connections, and serves the applied configuration while an update of
// it warms.
type listenerSet struct {
	log     *slog.Logger
	drain   time.Duration
	handler func(addr string) connServer

	// mu protects sockets and closed.
	mu      sync.Mutex
	sockets map[string]*socket
	closed  bool
	// wg tracks accept, serve, connection and drain goroutines.
	wg sync.WaitGroup
}

// reservation is an address bound but not listening yet.
type reservation interface {
	// listen starts listening; the reservation is used up.
	listen() (net.Listener, error)
	// Close releases the address unless listen was called.
	Close() error
}

// socket is one bound address.
type socket struct {
	name string // listener name, for logs
	res  reservation
	ln   net.Listener // nil until it serves
	srv  *http.Server // nil until it serves
	// httpConns feeds the connections to serve as HTTP to srv.
	httpConns *connQueue
	// cancel ends ctx of the socket's TCP proxy connections.
	cancel context.CancelFunc
	// conns tracks the connection goroutines (TCP proxies), for draining.
	conns sync.WaitGroup
}

func newListenerSet(log *slog.Logger, drain time.Duration, handler func(string) connServer) *listenerSet {
	return &listenerSet{log: log, drain: drain, handler: handler, sockets: map[string]*socket{}}
}

// reserve binds every address of addrs (address → listener name) that is
// not bound yet. On failure it closes what this call bound and returns an
// error naming the listener.
func (s *listenerSet) reserve(addrs map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("binding listeners: proxy is shutting down")
	}
	var opened []string
	for _, addr := range config.SortedKeys(addrs) {
		if _, ok := s.sockets[addr]; ok {
			continue
		}
		res, err := reserveAddr(addr)
		if err != nil {
			for _, a := range opened {
				s.sockets[a].res.Close()
				delete(s.sockets, a)
			}
			return &config.ResourceError{TypeURL: config.ListenerType, Name: addrs[addr], Field: "address", Err: fmt.Errorf("binding %s: %w", addr, err)}
		}
		s.sockets[addr] = &socket{name: addrs[addr], res: res}
		opened = append(opened, addr)
	}
	return nil
}

// sync starts serving every address in serve, and drains and closes every
// socket whose address is in neither serve nor keep.
func (s *listenerSet) sync(serve map[string]*config.ListenerConfig, keep map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for addr, sk := range s.sockets {
		if lc, ok := serve[addr]; ok {
			sk.name = lc.Name
			if sk.srv == nil {
				if err := s.startLocked(addr, sk); err != nil {
					// The address was bound; only listen() failed.
					s.log.Error("listener cannot serve", "listener", sk.name, "address", addr, "error", err)
					delete(s.sockets, addr)
				}
			}
			continue
		}
		if _, ok := keep[addr]; ok {
			continue
		}
		delete(s.sockets, addr)
		s.log.Info("closing listener", "listener", sk.name, "address", addr)
		s.stopLocked(sk)
	}
}

func (s *listenerSet) startLocked(addr string, sk *socket) error {
	ln, err := sk.res.listen()
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	sk.ln = ln
	h := s.handler(addr)
	sk.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
		ConnContext:       connInfoContext,
	}
	sk.srv.Protocols.SetHTTP1(true)
	sk.srv.Protocols.SetHTTP2(true)
	sk.srv.Protocols.SetUnencryptedHTTP2(true)
	sk.httpConns = newConnQueue(sk.ln.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	sk.cancel = cancel
	s.log.Info("serving listener", "listener", sk.name, "address", addr)
	srv, ln, q := sk.srv, sk.ln, sk.httpConns
	s.wg.Go(func() {
		if err := srv.Serve(q); err != nil && err != http.ErrServerClosed && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "address", addr, "error", err)
		}
	})
	s.wg.Go(func() {
		defer q.Close()
		for {
			c, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return
			}
			sk.conns.Go(func() {
				if hc := h.serveConn(ctx, c); hc != nil {
					q.push(hc)
				}
			})
		}
	})
	return nil
}

// stopLocked drains a socket in the background (owned by wg): in-flight
// requests and TCP connections get up to the drain timeout.
func (s *listenerSet) stopLocked(sk *socket) {
	if sk.srv == nil {
		sk.res.Close()
		return
	}
	sk.ln.Close()
	srv := sk.srv
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.drain)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		done := make(chan struct{})
		go func() {
			sk.conns.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
		}
		sk.cancel()
		<-done
	})
}

// addrs returns the bound addresses (for tests and the admin endpoint).
func (s *listenerSet) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return config.SortedKeys(s.sockets)
}

// closeAll drains and closes every socket and waits for all goroutines.
func (s *listenerSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for addr, sk := range s.sockets {
		delete(s.sockets, addr)
		s.stopLocked(sk)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// connQueue is the net.Listener an http.Server serves: it yields the
// connections the dispatcher hands over.
type connQueue struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*connQueue)(nil)

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next handed-over connection.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections handed over later are closed.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr is the bound address.
func (q *connQueue) Addr() net.Addr { return q.addr }

func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

// inspectTimeout bounds the wait for a ClientHello on listeners that
// match filter chains on it (Envoy's listener_filters_timeout).
const inspectTimeout = 15 * time.Second

// serveConn implements connServer.
func (h *listenerHandler) serveConn(ctx context.Context, c net.Conn) net.Conn {
	cfg := h.p.current.Load()
	var lc *config.ListenerConfig
	if cfg != nil {
		lc = cfg.Listeners[h.addr]
	}
	if lc == nil {
		c.Close()
		return nil
	}
	var info connInfo
	if lc.UseOriginalDst {
		var target *config.ListenerConfig
		target, info.origDst = cfg.Handoff(lc, c)
		if target != lc {
			lc, info.listener = target, target.Addr
		}
		if info.origDst != "" {
			h.p.log.Debug("redirected connection", "listener", lc.Name, "original_dst", info.origDst)
		}
	}
	sni, isTLS := "", false
	if lc.Peek {
		var err error
		stop := context.AfterFunc(ctx, func() { c.Close() })
		c, sni, isTLS, err = inspect(c, inspectTimeout)
		stop()
		if err != nil {
			h.p.log.Debug("inspecting connection", "listener", lc.Name, "error", err)
			c.Close()
			return nil
		}
	}
	fc := lc.ChainFor(sni, isTLS)
	if fc == nil {
		c.Close()
		return nil
	}
	if info != (connInfo{}) {
		c = &infoConn{Conn: c, info: info}
	}
	if fc.TLS != nil {
		// The handshake runs here, before the connection is served, so a
		// failure (no client certificate, one from a foreign CA, an
		// expired one) is counted with its reason and the connection
		// closed without a response.
		tc := tls.Server(c, fc.TLS.ServerConfig(h.p.secrets))
		hctx, cancel := context.WithTimeout(ctx, inspectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			h.p.handshakeFailed("downstream", c.RemoteAddr().String(), err)
			tc.Close()
			return nil
		}
		c = tc
	}
	if fc.TCP != nil {
		if len(fc.RBAC) > 0 && !h.p.allowConn(ctx, c, fc.RBAC, info.origDst) {
			c.Close()
			return nil
		}
		h.p.proxyTCP(ctx, c, lc, fc.TCP, info.origDst)
		return nil
	}
	return c
}

// inspect reads the start of a connection: when it is a TLS ClientHello it
// returns its SNI. The returned connection replays what was read.
func inspect(c net.Conn, timeout time.Duration) (net.Conn, string, bool, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		return c, "", false, err
	}
	if first[0] != 0x16 { // not a TLS handshake record
		return &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(first), c)}, "", false, nil
	}
	rec := &recordingConn{Conn: c, r: io.MultiReader(bytes.NewReader(first), c)}
	var sni string
	errPeeked := errors.New("peeked")
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = hello.ServerName
		return nil, errPeeked
	}}).Handshake()
	if !errors.Is(err, errPeeked) {
		return c, "", false, fmt.Errorf("reading TLS ClientHello: %w", err)
	}
	return &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(rec.buf), c)}, sni, true, nil
}

// recordingConn records what is read and discards writes (the alert of
// the aborted inspection handshake).
type recordingConn struct {
	net.Conn
	r   io.Reader
	buf []byte
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.buf = append(c.buf, b[:n]...)
	return n, err
}

func (c *recordingConn) Write(b []byte) (int, error) { return len(b), nil }

// replayConn replays inspected bytes before reading the connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes the underlying connection when it can.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

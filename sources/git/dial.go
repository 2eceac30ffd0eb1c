package git

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// Why this file exists: go-git's ssh transport connects (TCP and the ssh
// handshake) inside FetchContext and ListContext without their context,
// so a server that accepts the connection and never answers blocks a Fetch
// forever, whatever its deadline (x/crypto/ssh's ClientConfig.Timeout only
// bounds the TCP dial). Its only per-call hook into that connection is the
// proxy dialer: go-git dials ssh through golang.org/x/net/proxy.FromURL
// when FetchOptions.ProxyOptions.URL is set. So each ssh Fetch passes a
// proxy URL of a scheme this package registers, naming an entry in
// ctxDialers; the dialer it returns dials directly and closes the
// connection when the Fetch's context is done, which unblocks the
// handshake and every later read.
//
// http(s) needs none of this: go-git sends every request with the context.
// git:// reads honour the context and the connection is closed with the
// session.

// ctxDialScheme is the proxy URL scheme registered with x/net/proxy.
const ctxDialScheme = "gitmesh-ctxdial"

// ctxDialers maps the host of a ctxDialScheme URL to the context of the
// Fetch it belongs to. It is package state only because x/net/proxy's
// registry is: entries live for one Fetch (see withDialContext).
var ctxDialers sync.Map // string -> context.Context

func init() {
	// Registered once, before any goroutine can call proxy.FromURL.
	proxy.RegisterDialerType(ctxDialScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
		v, ok := ctxDialers.Load(u.Host)
		if !ok {
			return nil, errors.New("dialing: the fetch this connection belonged to has ended")
		}
		return ctxDialer{ctx: v.(context.Context)}, nil
	})
}

// withDialContext returns proxy options that make go-git's ssh transport
// dial under ctx, and a func that releases them. Other transports get
// zero options.
func withDialContext(ctx context.Context, ep endpoint) (transport.ProxyOptions, func()) {
	if !ep.ssh {
		return transport.ProxyOptions{}, func() {}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ctxDialers.Store(id, ctx)
	return transport.ProxyOptions{URL: ctxDialScheme + "://" + id}, func() { ctxDialers.Delete(id) }
}

// ctxDialer dials TCP directly and ties each connection to ctx.
type ctxDialer struct {
	ctx context.Context
}

var _ proxy.ContextDialer = ctxDialer{}

// Dial dials addr; the connection is closed when the dialer's context is
// done.
func (d ctxDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext dials addr bounded by both ctx and the dialer's context; the
// connection is closed when the dialer's context is done.
func (d ctxDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	var nd net.Dialer
	conn, err := nd.DialContext(dctx, network, addr)
	stop()
	if err != nil {
		if cerr := d.ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("dialing %s: %w", addr, cerr)
		}
		return nil, err
	}
	c := &ctxConn{Conn: conn}
	c.stop = context.AfterFunc(d.ctx, func() { _ = conn.Close() })
	return c, nil
}

// ctxConn is a connection closed when a context is done.
type ctxConn struct {
	net.Conn
	stop func() bool
}

// Close stops watching the context and closes the connection.
func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

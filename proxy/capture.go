package proxy

import (
	"context"
	"crypto/tls"
	"net"
)

// This file is the proxy's side of traffic capture (docs/capture.md): a
// connection that iptables redirected to a listener with use_original_dst
// is handed to the listener of the address the client dialled, as Envoy's
// original_dst listener filter and connection handler do, and remembers
// that address for ORIGINAL_DST clusters (Istio's PassthroughCluster).

// connInfo is what the proxy learned about a downstream connection when it
// accepted it.
type connInfo struct {
	// listener is the address (cfg.listeners key) of the listener that
	// serves the connection when it is not the one that accepted it.
	listener string
	// origDst is the destination the client dialled before netfilter
	// redirected the connection ("" when it was not redirected).
	origDst string
}

// infoConn carries a connInfo to the HTTP server (see connInfoContext).
type infoConn struct {
	net.Conn
	info connInfo
}

// CloseWrite half-closes the underlying connection when it can.
func (c *infoConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type connInfoKey struct{}

// connInfoContext is the HTTP servers' ConnContext: it puts the
// connection's connInfo, if any, into every request's context.
func connInfoContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ic, ok := c.(*infoConn); ok {
		return context.WithValue(ctx, connInfoKey{}, ic.info)
	}
	return ctx
}

// connInfoOf returns the connInfo of a request's connection.
func connInfoOf(ctx context.Context) connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(connInfo)
	return ci
}

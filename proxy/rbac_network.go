package proxy

import (
	"context"
	"crypto/tls"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"net"
	"net/http"
	"net/url"
)

// allowConn runs a chain's network RBAC filters on a new connection and
// reports whether it may be proxied. A TLS connection is handshaken first
// (bounded by inspectTimeout), so that authenticated principals see the
// verified peer certificate. Matchers on HTTP attributes see a request
// without headers.
func (p *Proxy) allowConn(ctx context.Context, c net.Conn, filters []*auth.NetworkRBAC, origDst string) bool {
	r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/"}, RemoteAddr: c.RemoteAddr().String()}
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, inspectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return false
		}
		st := tc.ConnectionState()
		r.TLS = &st
	}
	local := origDst
	if local == "" {
		local = c.LocalAddr().String()
	}
	r = r.WithContext(ctx)
	in := auth.NewAuthzInput(r, local, nil)
	for _, f := range filters {
		ok, _ := f.Rules.Allows(in)
		if f.Rules.Enforce && f.Rules.Action == auth.RBACLog {
			continue
		}
		if !ok {
			p.metrics.Auth.Inc(p.metrics.Auth.TCPDenied, f.StatPrefix)
			p.log.Debug("rbac denied connection", "remote", r.RemoteAddr, "local", local)
			return false
		}
		if f.Rules.Enforce {
			p.metrics.Auth.Inc(p.metrics.Auth.TCPAllowed, f.StatPrefix)
		}
	}
	return true
}

package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"net"
	"time"
)

// tlsHandshakeError is an upstream TLS handshake that failed: a connect
// failure (flag UF), as in Envoy.
type tlsHandshakeError struct {
	addr string
	err  error
}

func (e *tlsHandshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.addr, e.err)
}

func (e *tlsHandshakeError) Unwrap() error { return e.err }

// clientHandshake runs an upstream TLS handshake on raw within timeout.
// On failure it closes raw, counts and logs the reason, and returns a
// *tlsHandshakeError.
func (p *Proxy) clientHandshake(ctx context.Context, raw net.Conn, addr string, tc *mtls.TLSContext, http2 bool, timeout time.Duration) (*tls.Conn, error) {
	cfg, err := tc.ClientConfig(p.secrets, http2)
	if err == nil {
		conn := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err = conn.HandshakeContext(hctx)
		cancel()
		if err == nil {
			return conn, nil
		}
	}
	raw.Close()
	p.handshakeFailed("upstream", addr, err)
	return nil, &tlsHandshakeError{addr: addr, err: err}
}

// handshakeFailed counts and logs a failed handshake.
func (p *Proxy) handshakeFailed(direction, peer string, err error) {
	reason := mtls.HandshakeReason(err)
	p.metrics.TLSHandshakeErrors.WithLabelValues(direction, reason).Inc()
	p.log.Info("TLS handshake failed", "direction", direction, "peer", peer, "reason", reason, "error", err)
}

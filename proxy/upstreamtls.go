package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// transportSocketMatchKey is the endpoint filter_metadata key that
// transport_socket_matches match on.
const transportSocketMatchKey = "envoy.transport_socket_match"

// upstreamSockets is a cluster's transport sockets: transport_socket_matches
// tried in order against an endpoint's metadata, then transport_socket.
// A nil *tlsContext is plaintext (raw_buffer).
type upstreamSockets struct {
	def     *tlsContext
	matches []socketMatch
	// key identifies the configuration, for connection pool keys.
	key string
}

// socketMatch is one TransportSocketMatch.
type socketMatch struct {
	name  string
	match *structpb.Struct
	tls   *tlsContext
}

// buildClusterSockets builds a cluster's transport_socket and
// transport_socket_matches; nil when it has neither (plaintext).
func buildClusterSockets(c *clusterv3.Cluster) (*upstreamSockets, *fieldError) {
	if c.GetTransportSocket() == nil && len(c.GetTransportSocketMatches()) == 0 {
		return nil, nil
	}
	s := &upstreamSockets{}
	h := sha256.New()
	if ts := c.GetTransportSocket(); ts != nil {
		tc, fe := buildUpstreamTLS(ts)
		if fe != nil {
			fe.field = "transport_socket" + fe.field
			return nil, fe
		}
		s.def = tc
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ts)
		h.Write(b)
	}
	for i, m := range c.GetTransportSocketMatches() {
		field := fmt.Sprintf("transport_socket_matches[%d]", i)
		if err := checkFields(m, "name", "match", "transport_socket"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		if m.GetName() == "" {
			return nil, fieldErr(field+".name", "empty")
		}
		if m.GetTransportSocket() == nil {
			return nil, fieldErr(field+".transport_socket", "missing")
		}
		tc, fe := buildUpstreamTLS(m.GetTransportSocket())
		if fe != nil {
			fe.field = field + ".transport_socket" + fe.field
			return nil, fe
		}
		s.matches = append(s.matches, socketMatch{name: m.GetName(), match: m.GetMatch(), tls: tc})
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		h.Write(b)
	}
	s.key = hex.EncodeToString(h.Sum(nil)[:12])
	return s, nil
}

// forEndpoint returns the TLS context for an endpoint whose
// filter_metadata["envoy.transport_socket_match"] is md: the first match
// all of whose fields the metadata carries with equal values (an empty
// match takes every endpoint), else the cluster's transport_socket.
func (s *upstreamSockets) forEndpoint(md *structpb.Struct) *tlsContext {
	if s == nil {
		return nil
	}
	for _, m := range s.matches {
		ok := true
		for k, want := range m.match.GetFields() {
			got, present := md.GetFields()[k]
			if !present || !proto.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return m.tls
		}
	}
	return s.def
}

// tlsDialKey carries a tlsDial in a request's context to the pool's
// DialTLSContext.
type tlsDialKey struct{}

// tlsDial is the TLS context chosen for one request's endpoint.
type tlsDial struct {
	addr string
	tc   *tlsContext
}

// upstreamRequest points req at ep over the transport socket the cluster
// picks for it: scheme "https" (pooled apart from plaintext connections to
// the same address) with the TLS context in the request's context, or
// "http".
func (c *cluster) upstreamRequest(req *http.Request, ep *endpoint) *http.Request {
	req.URL.Host = ep.addr
	tc := c.sockets.forEndpoint(ep.tlsMatch)
	if tc == nil {
		req.URL.Scheme = "http"
		return req
	}
	req.URL.Scheme = "https"
	return req.WithContext(context.WithValue(req.Context(), tlsDialKey{}, &tlsDial{addr: ep.addr, tc: tc}))
}

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

// dialTLS is the pool transport's DialTLSContext: it dials and handshakes
// with the TLS context upstreamRequest chose.
func (pool *upstreamPool) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	td, _ := ctx.Value(tlsDialKey{}).(*tlsDial)
	if td == nil || td.addr != addr {
		return nil, &tlsHandshakeError{addr: addr, err: errors.New("no transport socket chosen for this endpoint")}
	}
	raw, err := pool.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return pool.p.clientHandshake(ctx, raw, addr, td.tc, pool.key.http2, pool.key.connectTimeout)
}

// clientHandshake runs an upstream TLS handshake on raw within timeout.
// On failure it closes raw, counts and logs the reason, and returns a
// *tlsHandshakeError.
func (p *Proxy) clientHandshake(ctx context.Context, raw net.Conn, addr string, tc *tlsContext, http2 bool, timeout time.Duration) (*tls.Conn, error) {
	cfg, err := tc.clientConfig(p.secrets, http2)
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
	reason := handshakeReason(err)
	p.metrics.tlsHandshakeErrors.WithLabelValues(direction, reason).Inc()
	p.log.Info("TLS handshake failed", "direction", direction, "peer", peer, "reason", reason, "error", err)
}

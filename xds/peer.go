package xds

import (
	"context"
	"crypto/x509"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Peer is what the transport says about the client of a stream: its
// address and, over TLS with client certificates, the certificate chain
// the server verified (leaf first).
type Peer struct {
	// Addr is the client's address; nil when unknown.
	Addr net.Addr
	// Chain is the verified client certificate chain, leaf first; nil
	// without TLS or when the client presented no certificate.
	Chain []*x509.Certificate
}

// IP returns the client's IP, or nil when Addr is not a TCP address.
func (p Peer) IP() net.IP {
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

type peerKey struct{}

// PeerFromContext returns the Peer of the stream an AdmitFunc is asked
// about.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// withPeer returns ctx carrying p for PeerFromContext.
func withPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerOf reads the Peer of a gRPC call's context: a stream's, or a call
// to a service registered with WithServices. Only the verified chain
// counts: with tls.RequestClientCert a client may present a
// certificate nobody checked.
func PeerOf(ctx context.Context) Peer {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}
	}
	out := Peer{Addr: p.Addr}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
		out.Chain = info.State.VerifiedChains[0]
	}
	return out
}

// WithClientCertificates refuses, with an Unauthenticated status, every
// stream whose client presented no certificate the TLS layer verified.
// The TLS credentials themselves (grpc.Creds with client certificates
// verified if given, so that other services on the server can admit
// callers without one) come with WithGRPCServerOptions; admission then
// reads the chain with PeerFromContext.
func WithClientCertificates() Option { return func(s *Server) { s.requireCert = true } }

// WithServices registers more gRPC services on the server Serve creates
// (the certificate service that issues the client certificates).
func WithServices(register ...func(grpc.ServiceRegistrar)) Option {
	return func(s *Server) { s.services = append(s.services, register...) }
}

// checkPeer refuses a stream without a verified client certificate when
// the server requires one.
func (s *Server) checkPeer(p Peer) error {
	if !s.requireCert || len(p.Chain) > 0 {
		return nil
	}
	s.log.Warn("refusing xds stream without a client certificate", "peer", p.AddrString())
	return status.Error(codes.Unauthenticated, "gitmesh xds: a client certificate is required (join with a token first: gitmesh proxy --join-token-file)")
}

// AddrString returns Addr as text, "" when it is unknown (for logs).
func (p Peer) AddrString() string {
	if p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

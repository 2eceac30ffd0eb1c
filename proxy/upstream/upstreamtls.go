package upstream

import (
	"context"
	"net/http"

	"github.com/gitmesh/gitmesh/proxy/mtls"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TransportSocketMatchKey is the endpoint filter_metadata key that
// transport_socket_matches match on.
const TransportSocketMatchKey = "envoy.transport_socket_match"

// UpstreamSockets is a cluster's transport sockets: transport_socket_matches
// tried in order against an endpoint's metadata, then transport_socket.
// A nil *tlsContext is plaintext (raw_buffer).
type UpstreamSockets struct {
	// Default is transport_socket; Matches are transport_socket_matches.
	Default *mtls.TLSContext
	Matches []SocketMatch
	// Key identifies the configuration, for connection pool keys.
	Key string
}

// SocketMatch is one TransportSocketMatch.
type SocketMatch struct {
	// Name is the match's name; Match the metadata an endpoint must carry;
	// TLS its transport socket (nil: plaintext).
	Name  string
	Match *structpb.Struct
	TLS   *mtls.TLSContext
}

// ForEndpoint returns the TLS context for an endpoint whose
// filter_metadata["envoy.transport_socket_match"] is md: the first match
// all of whose fields the metadata carries with equal values (an empty
// match takes every endpoint), else the cluster's transport_socket.
func (s *UpstreamSockets) ForEndpoint(md *structpb.Struct) *mtls.TLSContext {
	if s == nil {
		return nil
	}
	for _, m := range s.Matches {
		ok := true
		for k, want := range m.Match.GetFields() {
			got, present := md.GetFields()[k]
			if !present || !proto.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return m.TLS
		}
	}
	return s.Default
}

// TLSDialKey carries a tlsDial in a request's context to the pool's
// DialTLSContext.
type TLSDialKey struct{}

// TLSDial is the TLS context chosen for one request's endpoint.
type TLSDial struct {
	// Addr is the endpoint's address; TLS its context.
	Addr string
	TLS  *mtls.TLSContext
}

// UpstreamRequest points req at ep over the transport socket the cluster
// picks for it: scheme "https" (pooled apart from plaintext connections to
// the same address) with the TLS context in the request's context, or
// "http".
func (c *Cluster) UpstreamRequest(req *http.Request, ep *Endpoint) *http.Request {
	req.URL.Host = ep.Addr
	tc := c.Sockets.ForEndpoint(ep.TLSMatch)
	if tc == nil {
		req.URL.Scheme = "http"
		return req
	}
	req.URL.Scheme = "https"
	return req.WithContext(context.WithValue(req.Context(), TLSDialKey{}, &TLSDial{Addr: ep.Addr, TLS: tc}))
}

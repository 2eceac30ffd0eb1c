package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/proto"
)

// BuildClusterSockets builds a cluster's transport_socket and
// transport_socket_matches; nil when it has neither (plaintext).
func BuildClusterSockets(c *clusterv3.Cluster) (*upstream.UpstreamSockets, *fieldError) {
	if c.GetTransportSocket() == nil && len(c.GetTransportSocketMatches()) == 0 {
		return nil, nil
	}
	s := &upstream.UpstreamSockets{}
	h := sha256.New()
	if ts := c.GetTransportSocket(); ts != nil {
		tc, fe := buildUpstreamTLS(ts)
		if fe != nil {
			fe.Field = "transport_socket" + fe.Field
			return nil, fe
		}
		s.Default = tc
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
			fe.Field = field + ".transport_socket" + fe.Field
			return nil, fe
		}
		s.Matches = append(s.Matches, upstream.SocketMatch{Name: m.GetName(), Match: m.GetMatch(), TLS: tc})
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		h.Write(b)
	}
	s.Key = hex.EncodeToString(h.Sum(nil)[:12])
	return s, nil
}

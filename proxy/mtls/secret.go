package mtls

import (
	"crypto/tls"
	"encoding/json"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// SecretValue is one built SDS Secret: a certificate with its key, or a
// validation context (trusted roots and SAN matchers). Immutable.
type SecretValue struct {
	// Name, Version and Updated are the secret's name, the SDS version that
	// delivered it and when it was applied; Msg is the Secret as received.
	Name    string
	Version string
	Updated time.Time
	Msg     *tlsv3.Secret
	// Cert is tls_certificate; nil for a validation context.
	Cert *tls.Certificate
	// Validation is validation_context; nil for a certificate.
	Validation *ValidationConfig
}

// SecretStore holds the accepted secrets behind one atomic pointer: TLS
// handshakes read it (GetCertificate, GetClientCertificate, peer
// verification), so a rotated certificate or root bundle is used by the
// next handshake without rebuilding listeners or pools, while existing
// connections keep theirs. Only the applier writes it.
type SecretStore struct {
	// Current maps secret names to their accepted values; nil before the
	// first SDS update.
	Current atomic.Pointer[map[string]*SecretValue]
}

// get returns the secret called name, or nil when it has not arrived.
func (s *SecretStore) get(name string) *SecretValue {
	if s == nil {
		return nil
	}
	m := s.Current.Load()
	if m == nil {
		return nil
	}
	return (*m)[name]
}

// redacted is what /config_dump shows instead of a private key, as Envoy.
const redacted = "[redacted]"

// Dump is the secret as /config_dump shows it (Envoy's
// dynamic_active_secrets): private keys and passwords redacted.
func (sv *SecretValue) Dump() json.RawMessage {
	msg := proto.Clone(sv.Msg).(*tlsv3.Secret)
	if c := msg.GetTlsCertificate(); c != nil {
		red := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: redacted}}
		if c.PrivateKey != nil {
			c.PrivateKey = red
		}
		if c.Password != nil {
			c.Password = red
		}
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	out, _ := json.Marshal(struct {
		Name        string          `json:"name"`
		VersionInfo string          `json:"version_info"`
		LastUpdated time.Time       `json:"last_updated"`
		Secret      json.RawMessage `json:"secret"`
	}{sv.Name, sv.Version, sv.Updated, b})
	return out
}

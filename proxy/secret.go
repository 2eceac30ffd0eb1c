package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// secretValue is one built SDS Secret: a certificate with its key, or a
// validation context (trusted roots and SAN matchers). Immutable.
type secretValue struct {
	name    string
	version string
	updated time.Time
	msg     *tlsv3.Secret
	// cert is tls_certificate; nil for a validation context.
	cert *tls.Certificate
	// validation is validation_context; nil for a certificate.
	validation *validationConfig
}

// buildSecret validates a Secret: a tls_certificate (certificate_chain
// and private_key) or a validation_context. Errors name the field.
func buildSecret(s *tlsv3.Secret) (*secretValue, error) {
	fail := func(fe *fieldError) error {
		return &resourceError{typeURL: secretType, name: s.GetName(), field: fe.field, err: fe.err}
	}
	if err := checkFields(s, "name", "tls_certificate", "validation_context"); err != nil {
		return nil, fail(&fieldError{err: err})
	}
	sv := &secretValue{name: s.GetName(), msg: s}
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		cert, fe := buildCertificate(t.TlsCertificate)
		if fe != nil {
			fe.field = "tls_certificate" + fe.field
			return nil, fail(fe)
		}
		sv.cert = cert
	case *tlsv3.Secret_ValidationContext:
		vc, fe := buildValidationContext(t.ValidationContext)
		if fe != nil {
			fe.field = "validation_context" + fe.field
			return nil, fail(fe)
		}
		sv.validation = vc
	default:
		return nil, fail(fieldErr("", "want tls_certificate or validation_context"))
	}
	return sv, nil
}

// buildCertificate loads a TlsCertificate's chain and key.
func buildCertificate(c *tlsv3.TlsCertificate) (*tls.Certificate, *fieldError) {
	if err := checkFields(c, "certificate_chain", "private_key"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	chain, err := readDataSource(c.GetCertificateChain())
	if err != nil {
		return nil, fieldErr(".certificate_chain", "%w", err)
	}
	key, err := readDataSource(c.GetPrivateKey())
	if err != nil {
		return nil, fieldErr(".private_key", "%w", err)
	}
	if err := checkChainPEM(chain); err != nil {
		return nil, fieldErr(".certificate_chain", "%w", err)
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fieldErr(".private_key", "loading key pair: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fieldErr(".certificate_chain", "parsing certificate: %w", err)
		}
	}
	return &pair, nil
}

// checkChainPEM checks that chain holds PEM certificates that parse.
func checkChainPEM(chain []byte) error {
	n := 0
	for rest := chain; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate")
	}
	return nil
}

// secretStore holds the accepted secrets behind one atomic pointer: TLS
// handshakes read it (GetCertificate, GetClientCertificate, peer
// verification), so a rotated certificate or root bundle is used by the
// next handshake without rebuilding listeners or pools, while existing
// connections keep theirs. Only the applier writes it.
type secretStore struct {
	cur atomic.Pointer[map[string]*secretValue]
}

// get returns the secret called name, or nil when it has not arrived.
func (s *secretStore) get(name string) *secretValue {
	if s == nil {
		return nil
	}
	m := s.cur.Load()
	if m == nil {
		return nil
	}
	return (*m)[name]
}

// updateSecrets publishes the secrets of set into s, reusing the built value of a
// secret whose resource did not change. Secrets must have been validated
// (buildConfig does); one that fails to build is left out.
func updateSecrets(s *secretStore, set *resourceSet) {
	var prev map[string]*secretValue
	if m := s.cur.Load(); m != nil {
		prev = *m
	}
	next := make(map[string]*secretValue, len(set.byType[secretType]))
	now := time.Now()
	for name, m := range set.byType[secretType] {
		msg := m.(*tlsv3.Secret)
		if old, ok := prev[name]; ok && (old.msg == msg || proto.Equal(old.msg, msg)) {
			next[name] = old
			continue
		}
		sv, err := buildSecret(msg)
		if err != nil {
			continue
		}
		sv.version, sv.updated = set.versions[secretType], now
		next[name] = sv
	}
	s.cur.Store(&next)
}

// buildSecrets validates every secret of set.
func buildSecrets(set *resourceSet) error {
	for _, name := range sortedKeys(set.byType[secretType]) {
		if _, err := buildSecret(set.byType[secretType][name].(*tlsv3.Secret)); err != nil {
			return err
		}
	}
	return nil
}

// redacted is what /config_dump shows instead of a private key, as Envoy.
const redacted = "[redacted]"

// dump is the secret as /config_dump shows it (Envoy's
// dynamic_active_secrets): private keys and passwords redacted.
func (sv *secretValue) dump() json.RawMessage {
	msg := proto.Clone(sv.msg).(*tlsv3.Secret)
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
	}{sv.name, sv.version, sv.updated, b})
	return out
}

// secretNames returns the SDS secrets a transport socket references.
func secretNames(ts *corev3.TransportSocket) []string {
	if ts.GetName() != tlsTransportSocket || ts.GetTypedConfig() == nil {
		return nil
	}
	var ctx *tlsv3.CommonTlsContext
	up := &tlsv3.UpstreamTlsContext{}
	down := &tlsv3.DownstreamTlsContext{}
	switch {
	case ts.GetTypedConfig().MessageIs(up):
		if ts.GetTypedConfig().UnmarshalTo(up) != nil {
			return nil
		}
		ctx = up.GetCommonTlsContext()
	case ts.GetTypedConfig().MessageIs(down):
		if ts.GetTypedConfig().UnmarshalTo(down) != nil {
			return nil
		}
		ctx = down.GetCommonTlsContext()
	default:
		return nil
	}
	var out []string
	for _, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, c.GetName())
	}
	if v := ctx.GetValidationContextSdsSecretConfig(); v != nil {
		out = append(out, v.GetName())
	}
	if v := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); v != nil {
		out = append(out, v.GetName())
	}
	return out
}

// clusterSecretNames returns the SDS secrets a cluster's transport sockets
// reference.
func clusterSecretNames(c *clusterv3.Cluster) []string {
	out := secretNames(c.GetTransportSocket())
	for _, m := range c.GetTransportSocketMatches() {
		out = append(out, secretNames(m.GetTransportSocket())...)
	}
	return out
}

// listenerSecretNames returns the SDS secrets a listener's filter chains
// reference.
func listenerSecretNames(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		out = append(out, secretNames(fc.GetTransportSocket())...)
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		out = append(out, secretNames(dfc.GetTransportSocket())...)
	}
	return out
}

// secretMissing reports the secrets set's listeners and clusters reference
// that have not arrived.
func secretMissing(set *resourceSet) []missingRef {
	var out []missingRef
	for _, name := range set.subscriptions()[secretType] {
		if _, ok := set.byType[secretType][name]; !ok {
			out = append(out, missingRef{typeURL: secretType, name: name})
		}
	}
	return out
}

// sdsConfigCheck validates an SdsSecretConfig: a name and an ADS config
// source, as the proxy fetches secrets on its ADS stream only.
func sdsConfigCheck(c *tlsv3.SdsSecretConfig) *fieldError {
	if err := checkFields(c, "name", "sds_config"); err != nil {
		return fieldErr("", "%w", err)
	}
	if c.GetName() == "" {
		return fieldErr(".name", "empty")
	}
	if src := c.GetSdsConfig(); src == nil || src.GetAds() == nil {
		return fieldErr(".sds_config", "only ads config sources are supported")
	}
	return nil
}

package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"google.golang.org/protobuf/proto"
	"time"
)

// buildSecret validates a Secret: a tls_certificate (certificate_chain
// and private_key) or a validation_context. Errors name the field.
func buildSecret(s *tlsv3.Secret) (*mtls.SecretValue, error) {
	fail := func(fe *fieldError) error {
		return &ResourceError{TypeURL: SecretType, Name: s.GetName(), Field: fe.Field, Err: fe.Err}
	}
	if err := checkFields(s, "name", "tls_certificate", "validation_context"); err != nil {
		return nil, fail(&fieldError{Err: err})
	}
	sv := &mtls.SecretValue{Name: s.GetName(), Msg: s}
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		cert, fe := buildCertificate(t.TlsCertificate)
		if fe != nil {
			fe.Field = "tls_certificate" + fe.Field
			return nil, fail(fe)
		}
		sv.Cert = cert
	case *tlsv3.Secret_ValidationContext:
		vc, fe := BuildValidationContext(t.ValidationContext)
		if fe != nil {
			fe.Field = "validation_context" + fe.Field
			return nil, fail(fe)
		}
		sv.Validation = vc
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

// UpdateSecrets publishes the secrets of set into s, reusing the built value of a
// secret whose resource did not change. Secrets must have been validated
// (buildConfig does); one that fails to build is left out.
func UpdateSecrets(s *mtls.SecretStore, set *ResourceSet) {
	var prev map[string]*mtls.SecretValue
	if m := s.Current.Load(); m != nil {
		prev = *m
	}
	next := make(map[string]*mtls.SecretValue, len(set.ByType[SecretType]))
	now := time.Now()
	for name, m := range set.ByType[SecretType] {
		msg := m.(*tlsv3.Secret)
		if old := reusable(prev, name, msg); old != nil {
			next[name] = old
			continue
		}
		sv, err := buildSecret(msg)
		if err != nil {
			continue
		}
		sv.Version, sv.Updated = set.Versions[SecretType], now
		next[name] = sv
	}
	s.Current.Store(&next)
}

// reusable returns the built value in prev of the secret called name when
// its resource is msg unchanged, else nil.
func reusable(prev map[string]*mtls.SecretValue, name string, msg *tlsv3.Secret) *mtls.SecretValue {
	if old, ok := prev[name]; ok && (old.Msg == msg || proto.Equal(old.Msg, msg)) {
		return old
	}
	return nil
}

// buildSecrets validates the secrets of set that known does not already
// hold unchanged (those were validated when accepted), so that an update
// of another type parses no certificate or key.
func buildSecrets(set *ResourceSet, known *mtls.SecretStore) error {
	var prev map[string]*mtls.SecretValue
	if known != nil {
		if m := known.Current.Load(); m != nil {
			prev = *m
		}
	}
	for _, name := range SortedKeys(set.ByType[SecretType]) {
		msg := set.ByType[SecretType][name].(*tlsv3.Secret)
		if reusable(prev, name, msg) != nil {
			continue
		}
		if _, err := buildSecret(msg); err != nil {
			return err
		}
	}
	return nil
}

// secretNames returns the SDS secrets a transport socket references.
func secretNames(ts *corev3.TransportSocket) []string {
	if ts.GetName() != TLSTransportSocket || ts.GetTypedConfig() == nil {
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
func secretMissing(set *ResourceSet) []MissingRef {
	var out []MissingRef
	for _, name := range set.Subscriptions()[SecretType] {
		if _, ok := set.ByType[SecretType][name]; !ok {
			out = append(out, MissingRef{TypeURL: SecretType, Name: name})
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

package mtls_test

import (
	"crypto/x509"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

func TestVerifyPeerSANs(t *testing.T) {
	ca := prototest.NewCA(t, "root")
	chain, key := ca.Issue(t, prototest.SPIFFEID("a"), time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "*.example.com", "svc.local")
	leaf := prototest.KeyPair(t, chain, key)
	v, fe := config.BuildValidationContext(&tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca.PEM}},
	})
	if fe != nil {
		t.Fatal(fe.Err)
	}
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	tests := []struct {
		name string
		typ  mtls.SANType
		m    *matcherv3.StringMatcher
		want bool
	}{
		{"URI exact", mtls.SANURI, exact(prototest.SPIFFEID("a")), true},
		{"URI exact other", mtls.SANURI, exact(prototest.SPIFFEID("b")), false},
		{"URI prefix", mtls.SANURI, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/ns/default/"}}, true},
		{"URI suffix", mtls.SANURI, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/sa/b"}}, false},
		{"DNS exact via wildcard SAN", mtls.SANDNS, exact("a.example.com"), true},
		{"DNS wildcard covers one label", mtls.SANDNS, exact("a.b.example.com"), false},
		{"DNS type does not match URIs", mtls.SANDNS, exact(prototest.SPIFFEID("a")), false},
		{"any type (match_subject_alt_names)", mtls.SANAny, exact("svc.local"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm, fe := config.BuildSANMatcher(tt.typ, tt.m)
			if fe != nil {
				t.Fatal(fe.Err)
			}
			err := mtls.VerifyPeer([]*x509.Certificate{leaf.Leaf}, v.Roots, []mtls.SANMatcher{sm})
			if (err == nil) != tt.want {
				t.Errorf("verifyPeer: %v; want match %v", err, tt.want)
			}
			if err != nil && mtls.HandshakeReason(err) != mtls.ReasonVerifySAN {
				t.Errorf("reason %q; want %q", mtls.HandshakeReason(err), mtls.ReasonVerifySAN)
			}
		})
	}
}

package prototest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Issuer signs tokens with a key generated for the test.
type Issuer struct {
	T    testing.TB
	Iss  string
	Key  any
	Alg  jose.SignatureAlgorithm
	Kid  string
	JWKS []byte
}

// NewIssuer returns an ES256 issuer iss whose key has id kid.
func NewIssuer(t testing.TB, iss, kid string) *Issuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := &Issuer{T: t, Iss: iss, Key: k, Alg: jose.ES256, Kid: kid}
	ti.JWKS = JWKSOf(t, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
	return ti
}

// JWKSOf encodes keys as a JWKS document.
func JWKSOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Token signs claims; "iss" defaults to the issuer's and "exp" to an hour
// from now unless claims sets them (nil removes them).
func (ti *Issuer) Token(claims map[string]any) string {
	ti.T.Helper()
	c := map[string]any{"iss": ti.Iss, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		ti.T.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: ti.Alg, Key: jose.JSONWebKey{Key: ti.Key, KeyID: ti.Kid}}, opts)
	if err != nil {
		ti.T.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		ti.T.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		ti.T.Fatal(err)
	}
	return out
}

// IstioJWTConfig is the jwt_authn config Istio generates for one
// RequestAuthentication rule: requires_any {provider, allow_missing}.
func IstioJWTConfig(t testing.TB, providers ...*jwtv3.JwtProvider) *anypb.Any {
	t.Helper()
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var inner []*jwtv3.JwtRequirement
	var outer []*jwtv3.JwtRequirement
	for i, p := range providers {
		name := "origins-" + string(rune('0'+i))
		cfg.Providers[name] = p
		inner = append(inner, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: []*jwtv3.JwtRequirement{
				{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}},
				{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
			},
		}}})
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	req := inner[0]
	if len(inner) > 1 {
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}})
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: outer}}}
	}
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
	}}
	return Any(t, cfg)
}

// JWTProviderFor is a JwtProvider trusting ti's JWKS inline, for audiences.
func JWTProviderFor(ti *Issuer, audiences ...string) *jwtv3.JwtProvider {
	return &jwtv3.JwtProvider{
		Issuer:            ti.Iss,
		Audiences:         audiences,
		PayloadInMetadata: "payload",
		JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: string(ti.JWKS)},
		}},
	}
}

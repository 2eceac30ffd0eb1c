package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// testIssuer signs tokens with a key generated for the test.
type testIssuer struct {
	t    testing.TB
	iss  string
	key  any
	alg  jose.SignatureAlgorithm
	kid  string
	jwks []byte
}

func newTestIssuer(t testing.TB, iss, kid string) *testIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{t: t, iss: iss, key: k, alg: jose.ES256, kid: kid}
	ti.jwks = jwksOf(t, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
	return ti
}

func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// token signs claims; "iss" defaults to the issuer's and "exp" to an hour
// from now unless claims sets them (nil removes them).
func (ti *testIssuer) token(claims map[string]any) string {
	ti.t.Helper()
	c := map[string]any{"iss": ti.iss, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		ti.t.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: ti.alg, Key: jose.JSONWebKey{Key: ti.key, KeyID: ti.kid}}, opts)
	if err != nil {
		ti.t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		ti.t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		ti.t.Fatal(err)
	}
	return out
}

// istioJWTConfig is the jwt_authn config Istio generates for one
// RequestAuthentication rule: requires_any {provider, allow_missing}.
func istioJWTConfig(t testing.TB, providers ...*jwtv3.JwtProvider) *anypb.Any {
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
	return anyOf(t, cfg)
}

func jwtProviderFor(ti *testIssuer, audiences ...string) *jwtv3.JwtProvider {
	return &jwtv3.JwtProvider{
		Issuer:            ti.iss,
		Audiences:         audiences,
		PayloadInMetadata: "payload",
		JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: string(ti.jwks)},
		}},
	}
}

func TestJWTFilter(t *testing.T) {
	good := newTestIssuer(t, "https://issuer.example", "k1")
	other := newTestIssuer(t, "https://other.example", "k2")
	// forger signs with its own key but claims good's issuer and kid.
	forger := newTestIssuer(t, good.iss, "k1")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaIss := &testIssuer{t: t, iss: "rsa-issuer", key: rsaKey, alg: jose.RS256, kid: "r1"}
	rsaIss.jwks = jwksOf(t, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "r1", Algorithm: string(jose.RS256)})

	f, fe := config.BuildJWTAuthn(istioJWTConfig(t, jwtProviderFor(good, "bookinfo"), jwtProviderFor(rsaIss)))
	if fe != nil {
		t.Fatalf("building: %s: %v", fe.Field, fe.Err)
	}
	now := time.Now()
	tests := []struct {
		name   string
		auth   string // Authorization header
		query  string
		want   auth.JWTStatus
		claims bool
	}{
		{name: "no token passes unauthenticated", want: auth.JWTOK},
		{name: "valid ES256", auth: "Bearer " + good.token(map[string]any{"aud": "bookinfo"}), want: auth.JWTOK, claims: true},
		{name: "valid RS256 second provider", auth: "Bearer " + rsaIss.token(nil), want: auth.JWTOK, claims: true},
		{name: "audience in list", auth: "Bearer " + good.token(map[string]any{"aud": []string{"x", "bookinfo"}}), want: auth.JWTOK, claims: true},
		{name: "token in access_token param", query: "access_token=" + good.token(map[string]any{"aud": "bookinfo"}), want: auth.JWTOK, claims: true},
		{name: "expired beyond skew", auth: "Bearer " + good.token(map[string]any{"aud": "bookinfo", "exp": now.Add(-2 * time.Minute).Unix()}), want: auth.JWTExpired},
		{name: "expired within 60s skew", auth: "Bearer " + good.token(map[string]any{"aud": "bookinfo", "exp": now.Add(-30 * time.Second).Unix()}), want: auth.JWTOK, claims: true},
		{name: "not yet valid", auth: "Bearer " + good.token(map[string]any{"aud": "bookinfo", "nbf": now.Add(5 * time.Minute).Unix()}), want: auth.JWTNotYetValid},
		{name: "wrong issuer", auth: "Bearer " + other.token(map[string]any{"aud": "bookinfo"}), want: auth.JWTUnknownIssuer},
		{name: "wrong audience", auth: "Bearer " + good.token(map[string]any{"aud": "other"}), want: auth.JWTAudienceNotAllowed},
		{name: "bad signature", auth: "Bearer " + forger.token(map[string]any{"aud": "bookinfo"}), want: auth.JWTVerificationFail},
		{name: "garbage", auth: "Bearer not-a-jwt", want: auth.JWTBadFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api?"+tt.query, nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			payloads, st := f.Run(r, now)
			if st != tt.want {
				t.Fatalf("status = %q; want %q", st, tt.want)
			}
			if got := payloads["payload"] != nil; got != tt.claims {
				t.Errorf("payload in metadata = %v; want %v", got, tt.claims)
			}
			if st == auth.JWTOK && tt.auth != "" && r.Header.Get("Authorization") != "" {
				t.Errorf("Authorization still forwarded; want it removed (forward: false)")
			}
		})
	}
}

func TestJWTFilterRejectsEveryTokenWithEmptyJWKS(t *testing.T) {
	good := newTestIssuer(t, "iss", "k1")
	p := jwtProviderFor(good)
	p.GetLocalJwks().Specifier = &corev3.DataSource_InlineString{InlineString: `{"keys":[]}`}
	f, fe := config.BuildJWTAuthn(istioJWTConfig(t, p))
	if fe != nil {
		t.Fatalf("building: %v", fe.Err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+good.token(nil))
	if _, st := f.Run(r, time.Now()); st == auth.JWTOK {
		t.Fatalf("status OK; want a failure")
	}
}

func TestJWTFilterRejectsUnsupportedFields(t *testing.T) {
	good := newTestIssuer(t, "iss", "k1")
	p := jwtProviderFor(good)
	p.RequireExpiration = true
	_, fe := config.BuildJWTAuthn(istioJWTConfig(t, p))
	if fe == nil || fe.Field != ".providers[origins-0]" {
		t.Fatalf("got %+v; want an error at .providers[origins-0]", fe)
	}
}

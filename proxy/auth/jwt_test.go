package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/go-jose/go-jose/v4"
)

func TestJWTFilter(t *testing.T) {
	good := prototest.NewIssuer(t, "https://issuer.example", "k1")
	other := prototest.NewIssuer(t, "https://other.example", "k2")
	// forger signs with its own key but claims good's issuer and kid.
	forger := prototest.NewIssuer(t, good.Iss, "k1")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaIss := &prototest.Issuer{T: t, Iss: "rsa-issuer", Key: rsaKey, Alg: jose.RS256, Kid: "r1"}
	rsaIss.JWKS = prototest.JWKSOf(t, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "r1", Algorithm: string(jose.RS256)})

	f, fe := config.BuildJWTAuthn(prototest.IstioJWTConfig(t, prototest.JWTProviderFor(good, "bookinfo"), prototest.JWTProviderFor(rsaIss)))
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
		{name: "valid ES256", auth: "Bearer " + good.Token(map[string]any{"aud": "bookinfo"}), want: auth.JWTOK, claims: true},
		{name: "valid RS256 second provider", auth: "Bearer " + rsaIss.Token(nil), want: auth.JWTOK, claims: true},
		{name: "audience in list", auth: "Bearer " + good.Token(map[string]any{"aud": []string{"x", "bookinfo"}}), want: auth.JWTOK, claims: true},
		{name: "token in access_token param", query: "access_token=" + good.Token(map[string]any{"aud": "bookinfo"}), want: auth.JWTOK, claims: true},
		{name: "expired beyond skew", auth: "Bearer " + good.Token(map[string]any{"aud": "bookinfo", "exp": now.Add(-2 * time.Minute).Unix()}), want: auth.JWTExpired},
		{name: "expired within 60s skew", auth: "Bearer " + good.Token(map[string]any{"aud": "bookinfo", "exp": now.Add(-30 * time.Second).Unix()}), want: auth.JWTOK, claims: true},
		{name: "not yet valid", auth: "Bearer " + good.Token(map[string]any{"aud": "bookinfo", "nbf": now.Add(5 * time.Minute).Unix()}), want: auth.JWTNotYetValid},
		{name: "wrong issuer", auth: "Bearer " + other.Token(map[string]any{"aud": "bookinfo"}), want: auth.JWTUnknownIssuer},
		{name: "wrong audience", auth: "Bearer " + good.Token(map[string]any{"aud": "other"}), want: auth.JWTAudienceNotAllowed},
		{name: "bad signature", auth: "Bearer " + forger.Token(map[string]any{"aud": "bookinfo"}), want: auth.JWTVerificationFail},
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
	good := prototest.NewIssuer(t, "iss", "k1")
	p := prototest.JWTProviderFor(good)
	p.GetLocalJwks().Specifier = &corev3.DataSource_InlineString{InlineString: `{"keys":[]}`}
	f, fe := config.BuildJWTAuthn(prototest.IstioJWTConfig(t, p))
	if fe != nil {
		t.Fatalf("building: %v", fe.Err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+good.Token(nil))
	if _, st := f.Run(r, time.Now()); st == auth.JWTOK {
		t.Fatalf("status OK; want a failure")
	}
}

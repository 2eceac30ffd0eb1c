package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// jwtIssuer signs tokens for RequestAuthentication tests.
type jwtIssuer struct {
	signer jose.Signer
	jwks   string
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "test", Algorithm: "ES256", Use: "sig"}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "test"))
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{signer: signer, jwks: string(b)}
}

// jwtIssuerURL is the iss claim of jwtIssuer's tokens.
const jwtIssuerURL = "https://issuer.test"

func (j *jwtIssuer) token(t *testing.T, sub string, groups []string, exp time.Time) string {
	t.Helper()
	return j.sign(t, map[string]any{
		"iss": jwtIssuerURL, "sub": sub, "aud": "httpbin", "groups": groups,
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(),
	})
}

// sign returns a token with claims.
func (j *jwtIssuer) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	s, err := jwt.Signed(j.signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthorizationByPeerIdentity walks Istio's evaluation order through
// real sidecars over mTLS, the principals taken from their certificates:
// DENY before ALLOW, an ALLOW policy denies what it does not match, claims
// of a token checked against inline JWKS decide, and a denial is 403
// "RBAC: access denied".
func TestAuthorizationByPeerIdentity(t *testing.T) {
	z := startZeroTrustMesh(t)
	iss := newJWTIssuer(t)
	jwks, _ := json.Marshal(iss.jwks)
	z.push(t, "httpbin: authorization", map[string]string{"policy/authz.yaml": fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: httpbin
  namespace: default
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: https://issuer.test
    audiences: [httpbin]
    jwks: %s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-allow
  namespace: default
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/public/*"]
  - to:
    - operation:
        paths: ["/admin"]
    when:
    - key: request.auth.claims[groups]
      values: ["admins"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-deny
  namespace: default
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/public/secret"]
`, jwks)})

	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	admin := iss.token(t, "alice", []string{"admins"}, time.Now().Add(time.Hour))
	user := iss.token(t, "bob", []string{"users"}, time.Now().Add(time.Hour))
	expired := iss.token(t, "alice", []string{"admins"}, time.Now().Add(-time.Hour))
	forged := admin[:len(admin)-4] + "AAAA"

	for _, tc := range []struct {
		name    string
		from    nodemeta.Workload
		method  string
		path    string
		headers map[string]string
		code    int
	}{
		{"allowed principal, method and path", z.sleep, "GET", "/public/a", nil, 200},
		{"DENY wins over ALLOW", z.sleep, "GET", "/public/secret", nil, 403},
		{"method not allowed", z.sleep, "POST", "/public/a", nil, 403},
		{"other principal", z.other, "GET", "/public/a", nil, 403},
		{"no rule matches", z.sleep, "GET", "/private", nil, 403},
		{"claim groups=admins", z.other, "GET", "/admin", bearer(admin), 200},
		{"claim groups=users", z.other, "GET", "/admin", bearer(user), 403},
		{"no token", z.other, "GET", "/admin", nil, 403},
		{"expired token", z.other, "GET", "/admin", bearer(expired), 401},
		{"bad signature", z.other, "GET", "/admin", bearer(forged), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e2etest.Eventually(t, 10*time.Second, tc.name, func() string {
				code, body := call(tc.from.Outbound, "httpbin:8000", tc.method, tc.path, tc.headers)
				if code != tc.code {
					return fmt.Sprintf("status %d (%q), want %d", code, body, tc.code)
				}
				if code == 403 && body != "RBAC: access denied" {
					return fmt.Sprintf("403 body %q, want %q", body, "RBAC: access denied")
				}
				return ""
			})
		})
	}
}

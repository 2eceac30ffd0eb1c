package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// idpKey is an identity provider for the test: its JWKS is served on
// loopback and it signs tokens.
type idpKey struct {
	t   testing.TB
	key *ecdsa.PrivateKey
	iss string
}

func (k *idpKey) token(claims map[string]any) string {
	k.t.Helper()
	c := map[string]any{"iss": k.iss, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for name, v := range claims {
		c[name] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		k.t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.key, KeyID: "k1"}}, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		k.t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		k.t.Fatal(err)
	}
	return tok
}

// TestAuthorizationPolicy pushes a RequestAuthentication (keys at a
// jwksUri the controller fetches) and ALLOW and DENY AuthorizationPolicies
// for reviews, and checks through a client sidecar and the reviews
// sidecar's inbound listener what each request gets.
func TestAuthorizationPolicy(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) }))
	t.Cleanup(idp.Close)
	issuer := &idpKey{t: t, key: key, iss: "https://idp.example.com"}
	app := e2etest.Backend(t, "reviews")

	repo := e2etest.NewGitRemote(t)
	repo.Push("reviews with authorization", map[string]string{"policy/reviews.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: %s
    jwksUri: %s/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - to: [{operation: {paths: ["/public/*"]}}]
  - from: [{source: {requestPrincipals: ["%s/*"]}}]
    when:
    - key: request.auth.claims[groups]
      values: [admin]
`, issuer.iss, idp.URL, issuer.iss)})

	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")
	client := e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "client-1", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: stableAddr(t),
	})
	reviews := e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "reviews-1", Service: "reviews", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "reviews"}, Inbound: stableAddr(t), App: strings.TrimPrefix(app.URL, "http://"),
	})

	send := func(method, path, token string) (int, string) {
		var headers map[string]string
		if token != "" {
			headers = map[string]string{"Authorization": "Bearer " + token}
		}
		return call(client.Outbound, "reviews.default.svc.cluster.local", method, path, headers)
	}
	e2etest.Eventually(t, 30*time.Second, "authorization served", func() string {
		if code, body := send("GET", "/private", ""); code != http.StatusForbidden {
			return fmt.Sprintf("GET /private without a token: %d %q; want 403 (status %+v)", code, body, m.status())
		}
		return ""
	})

	tests := []struct {
		name, method, path string
		claims             map[string]any // nil: no token
		code               int
		body               string
	}{
		{"public without token", "GET", "/public/list", nil, 200, "reviews"},
		{"private without token", "GET", "/private", nil, 403, "RBAC: access denied"},
		{"private as admin", "GET", "/private", map[string]any{"groups": []string{"admin"}}, 200, "reviews"},
		{"private as reader", "GET", "/private", map[string]any{"groups": []string{"reader"}}, 403, "RBAC: access denied"},
		{"expired token", "GET", "/public/list", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, 401, "Jwt is expired"},
		{"delete as admin", "DELETE", "/private", map[string]any{"groups": []string{"admin"}}, 403, "RBAC: access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := ""
			if tt.claims != nil {
				token = issuer.token(tt.claims)
			}
			if code, body := send(tt.method, tt.path, token); code != tt.code || body != tt.body {
				t.Errorf("%s %s: %d %q; want %d %q", tt.method, tt.path, code, body, tt.code, tt.body)
			}
		})
	}

	resp, err := http.Get("http://" + reviews.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(metrics), `envoy_http_rbac_denied{envoy_http_conn_manager_prefix="inbound"}`) {
		t.Errorf("reviews proxy exports no envoy_http_rbac_denied for inbound")
	}
}

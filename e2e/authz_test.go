package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// TestAuthorizationPolicy pushes a RequestAuthentication (keys at a
// jwksUri the controller fetches) and ALLOW and DENY AuthorizationPolicies
// for reviews, and checks through a client sidecar and the reviews
// sidecar's inbound listener what each request gets.
func TestAuthorizationPolicy(t *testing.T) {
	issuer := newJWTIssuer(t)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, issuer.jwks) }))
	t.Cleanup(idp.Close)
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
`, jwtIssuerURL, idp.URL, jwtIssuerURL)})

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
				claims := map[string]any{"iss": jwtIssuerURL, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
				for name, v := range tt.claims {
					claims[name] = v
				}
				token = issuer.sign(t, claims)
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

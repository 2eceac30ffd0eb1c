package proxy

import (
	"net/http/httptest"
	"testing"
	"time"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/routing"
)

// BenchmarkRBACAllows evaluates an Istio-shaped ALLOW filter (two policies:
// path prefix and method, then a JWT claim) on a request that matches the
// second policy only.
func BenchmarkRBACAllows(b *testing.B) {
	f, fe := config.BuildRBAC(anyOf(b, rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
		"a": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("GET")), pOr(pPathPrefix("/public/")))}, idAnd(idAny())),
		"b": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("groups", "admin"))),
	})))
	if fe != nil {
		b.Fatal(fe.Err)
	}
	r := httptest.NewRequest("GET", "http://svc/private/items?x=1", nil)
	md := routing.DynamicMetadata{config.JWTAuthnFilterName: {"payload": map[string]any{"groups": []any{"dev", "admin"}}}}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := f.Allows(auth.NewAuthzInput(r, "10.0.0.2:8080", md)); !ok {
			b.Fatal("denied")
		}
	}
}

// BenchmarkJWTVerify verifies an ES256 token through Istio's
// requires_any {provider, allow_missing}.
func BenchmarkJWTVerify(b *testing.B) {
	iss := newTestIssuer(b, "https://idp.example", "k1")
	f, fe := config.BuildJWTAuthn(istioJWTConfig(b, jwtProviderFor(iss)))
	if fe != nil {
		b.Fatal(fe.Err)
	}
	tok := "Bearer " + iss.Token(map[string]any{"groups": []string{"admin"}})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", tok)
		if _, st := f.Run(r, now); st != auth.JWTOK {
			b.Fatal(st)
		}
	}
}

// BenchmarkAuthorizedRoundTrip sends requests through a proxy whose
// connection manager has no filters, Istio's RBAC filters, or jwt_authn
// and RBAC, to a real backend: the cost the filters add to a round trip.
func BenchmarkAuthorizedRoundTrip(b *testing.B) {
	iss := newTestIssuer(b, "https://idp.example", "k1")
	allow := rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
		"a": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("GET")), pOr(pPathPrefix("/public/")))}, idAnd(idAny())),
		"b": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("groups", "admin"))),
	})
	for _, tc := range []struct {
		name    string
		filters func(b *testing.B) []*hcmv3.HttpFilter
		token   bool
	}{
		{"none", func(*testing.B) []*hcmv3.HttpFilter { return nil }, false},
		{"rbac", func(b *testing.B) []*hcmv3.HttpFilter {
			return []*hcmv3.HttpFilter{typedHTTPFilter(config.RBACFilterName, anyOf(b, allow))}
		}, false},
		{"jwt+rbac", func(b *testing.B) []*hcmv3.HttpFilter {
			return []*hcmv3.HttpFilter{
				typedHTTPFilter(config.JWTAuthnFilterName, istioJWTConfig(b, jwtProviderFor(iss))),
				typedHTTPFilter(config.RBACFilterName, anyOf(b, allow)),
			}
		}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newRig(b, "sidecar")
			app := backend(b, "app")
			r.push(withHTTPFilters(b, hcmListener(b, "outbound", r.out, "outbound"), tc.filters(b)...),
				routeConfig("outbound", vhost("svc", []string{"*"}, toCluster(prefixMatch("/"), "app"))),
				staticCluster(b, "app", "app.default.svc.cluster.local", []string{hostPort(app)}))
			path := "/public/x"
			hdr := map[string]string{}
			if tc.token {
				path = "/private"
				hdr["Authorization"] = "Bearer " + iss.Token(map[string]any{"groups": []string{"admin"}})
			}
			b.ReportAllocs()
			for b.Loop() {
				if resp, _ := r.get("GET", "svc", path, hdr); resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

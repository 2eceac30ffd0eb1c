package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"google.golang.org/protobuf/types/known/anypb"
)

// withHTTPFilters puts filters before the router of every HCM of l.
func withHTTPFilters(t testing.TB, l *listenerv3.Listener, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		f := fc.GetFilters()[0]
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.HttpFilters = append(append([]*hcmv3.HttpFilter{}, filters...), hcm.HttpFilters...)
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, hcm)}
	}
	return l
}

func typedHTTPFilter(name string, cfg *anypb.Any) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}
}

// claimRoute is Istio's translation of a VirtualService header match on
// @request.auth.claims[name]: a dynamic_metadata matcher on the payload.
func claimRoute(name, value, cluster string) *routev3.Route {
	m := prefixMatch("/")
	m.DynamicMetadata = []*matcherv3.MetadataMatcher{claimMatcher(name, value)}
	return toCluster(m, cluster)
}

// TestAuthorizationThroughProxy runs requests through a real proxy whose
// connection manager has Istio's jwt_authn, a DENY and an ALLOW RBAC
// filter, and a route matching a JWT claim.
func TestAuthorizationThroughProxy(t *testing.T) {
	r := newRig(t, "sidecar")
	main, beta := backend(t, "main"), backend(t, "beta")
	iss := newTestIssuer(t, "https://idp.example", "k1")

	deny := rbacConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
		"ns[default]-policy[no-delete]-rule[0]": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("DELETE")))}, idAnd(idAny())),
	})
	allow := rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
		"ns[default]-policy[public]-rule[0]": policy([]*rbacconfigv3.Permission{pAnd(pOr(pPathPrefix("/public/")))}, idAnd(idAny())),
		"ns[default]-policy[admins]-rule[0]": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("groups", "admin"))),
	})
	l := withHTTPFilters(t, hcmListener(t, "outbound", r.out, "outbound"),
		typedHTTPFilter(config.JWTAuthnFilterName, istioJWTConfig(t, jwtProviderFor(iss))),
		typedHTTPFilter(config.RBACFilterName, anyOf(t, deny)),
		typedHTTPFilter(config.RBACFilterName, anyOf(t, allow)),
	)
	r.push(l, routeConfig("outbound", vhost("svc", []string{"*"},
		claimRoute("groups", "beta", "beta"),
		toCluster(prefixMatch("/"), "main"),
	)),
		staticCluster(t, "main", "main.default.svc.cluster.local", []string{hostPort(main)}),
		staticCluster(t, "beta", "beta.default.svc.cluster.local", []string{hostPort(beta)}),
	)

	bearer := func(claims map[string]any) map[string]string {
		return map[string]string{"Authorization": "Bearer " + iss.Token(claims)}
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		body               string
	}{
		{"public without token", "GET", "/public/x", nil, 200, "main"},
		{"private without token", "GET", "/private", nil, 403, auth.RBACDeniedBody},
		{"private as admin", "GET", "/private", bearer(map[string]any{"groups": []string{"dev", "admin"}}), 200, "main"},
		{"private as dev", "GET", "/private", bearer(map[string]any{"groups": []string{"dev"}}), 403, auth.RBACDeniedBody},
		{"expired token", "GET", "/public/x", bearer(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), 401, "Jwt is expired"},
		{"foreign issuer", "GET", "/public/x", map[string]string{"Authorization": "Bearer " + newTestIssuer(t, "evil", "k1").Token(nil)}, 401, "Jwt issuer is not configured"},
		{"delete denied before allow", "DELETE", "/public/x", bearer(map[string]any{"groups": []string{"admin"}}), 403, auth.RBACDeniedBody},
		{"claim routes to beta", "GET", "/public/x", bearer(map[string]any{"groups": []string{"beta"}}), 200, "beta"},
		{"dot segments do not escape", "GET", "/public/../private", nil, 403, auth.RBACDeniedBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := r.get(tt.method, "svc", tt.path, tt.hdr)
			if resp.StatusCode != tt.code || body != tt.body {
				t.Fatalf("got %d %q; want %d %q", resp.StatusCode, body, tt.code, tt.body)
			}
			if tt.code == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
				t.Errorf("WWW-Authenticate = %q; want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if got := r.metricLines("envoy_http_rbac_denied", `envoy_http_conn_manager_prefix="outbound"`); len(got) != 1 || !strings.HasSuffix(got[0], " 4") {
		t.Errorf("envoy_http_rbac_denied = %q; want 4", got)
	}
	if got := r.metricLines("envoy_http_jwt_authn_denied", `envoy_http_conn_manager_prefix="outbound"`); len(got) != 1 || !strings.HasSuffix(got[0], " 2") {
		t.Errorf("envoy_http_jwt_authn_denied = %q; want 2", got)
	}
	if got := r.metricLines("istio_requests_total", `response_code="403"`, `response_flags="RBAC"`); len(got) != 1 || !strings.HasSuffix(got[0], " 4") {
		t.Errorf("istio_requests_total for 403 = %q; want 4 with flag RBAC", got)
	}
}

package compiler

import (
	"errors"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// reviewsClass is a sidecar of reviews in default with an inbound listener.
var reviewsClass = nodemeta.ProxyClass{
	Role: nodemeta.RoleSidecar, Namespace: "default", Service: "reviews",
	Labels:   map[string]string{"app": "reviews", "version": "v1"},
	Outbound: "127.0.0.1:15001", Inbound: "127.0.0.1:15006", App: "127.0.0.1:9080",
}

func parseSecurity(t *testing.T, yaml string, opts ...Option) (*Policy, Diagnostics) {
	t.Helper()
	return Parse(splitObjects("policy.yaml", []byte(yaml)), opts...)
}

// httpFiltersOf returns the HTTP filters of the first HCM of a listener of
// the class's snapshot.
func httpFiltersOf(t *testing.T, p *Policy, class nodemeta.ProxyClass, listener string) []*hcmv3.HttpFilter {
	t.Helper()
	snap, err := p.Compile(class, nil)
	if err != nil {
		t.Fatalf("compiling: %v", err)
	}
	for name, res := range snap.Resources.GetResources(resourcev3.ListenerType) {
		if name != listener {
			continue
		}
		l := res.(*listenerv3.Listener)
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		return hcm.GetHttpFilters()
	}
	t.Fatalf("no listener %s", listener)
	return nil
}

func filterNames(fs []*hcmv3.HttpFilter) []string {
	var out []string
	for _, f := range fs {
		name := f.GetName()
		if name == "envoy.filters.http.rbac" {
			r := &rbacfilterv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(r); err == nil {
				name += "/" + r.GetRules().GetAction().String()
			}
		}
		out = append(out, name)
	}
	return out
}

// rbacRules returns the RBAC rules of the filter with action.
func rbacRules(t *testing.T, fs []*hcmv3.HttpFilter, action rbacv3.RBAC_Action) *rbacv3.RBAC {
	t.Helper()
	for _, f := range fs {
		if f.GetName() != "envoy.filters.http.rbac" {
			continue
		}
		r := &rbacfilterv3.RBAC{}
		if err := f.GetTypedConfig().UnmarshalTo(r); err != nil {
			t.Fatal(err)
		}
		if r.GetRules().GetAction() == action {
			return r.GetRules()
		}
	}
	return nil
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	return strings.Join(strings.Fields(s), "")
}

func TestAuthorizationPolicyFilters(t *testing.T) {
	p, diags := parseSecurity(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: istio-system}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
    from: [{source: {notNamespaces: [default]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*", "*.css"], ports: ["9080"]}}]
  - when:
    - key: request.auth.claims[groups]
      values: [admin]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: prod}
spec: {}
`)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	fs := httpFiltersOf(t, p, reviewsClass, "inbound")
	want := "envoy.filters.http.rbac/LOG envoy.filters.http.rbac/DENY envoy.filters.http.rbac/ALLOW envoy.filters.http.fault envoy.filters.http.cors envoy.filters.http.router"
	if got := strings.Join(filterNames(fs), " "); got != want {
		t.Fatalf("inbound filters:\n got %s\nwant %s", got, want)
	}
	if out := httpFiltersOf(t, p, reviewsClass, "outbound"); len(out) != 3 {
		t.Errorf("outbound filters = %v; want no authorization on the outbound listener", filterNames(out))
	}

	allow := rbacRules(t, fs, rbacv3.RBAC_ALLOW)
	if len(allow.GetPolicies()) != 2 {
		t.Fatalf("ALLOW policies = %v; want the two rules of reviews only (other-app selects ratings, other-ns is another namespace)", allow.GetPolicies())
	}
	tests := []struct {
		name, policy, want string
	}{
		{"from principals, to methods/paths/ports", "ns[default]-policy[reviews]-rule[0]", `{
 "permissions":[{"andRules":{"rules":[
   {"orRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}}]}},
   {"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/api/"}}},{"urlPath":{"path":{"suffix":".css"}}}]}},
   {"orRules":{"rules":[{"destinationPort":9080}]}}]}}],
 "principals":[{"andIds":{"ids":[{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/productpage"}}}]}}]}}]}`},
		{"when claims", "ns[default]-policy[reviews]-rule[1]", `{
 "permissions":[{"andRules":{"rules":[{"any":true}]}}],
 "principals":[{"andIds":{"ids":[{"metadata":{"filter":"envoy.filters.http.jwt_authn",
   "path":[{"key":"payload"},{"key":"groups"}],
   "value":{"orMatch":{"valueMatchers":[{"listMatch":{"oneOf":{"stringMatch":{"exact":"admin"}}}},{"stringMatch":{"exact":"admin"}}]}}}}]}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := allow.GetPolicies()[tt.policy]
			if pol == nil {
				t.Fatalf("no policy %s", tt.policy)
			}
			if got := compactJSON(t, protojson.Format(pol)); got != compactJSON(t, tt.want) {
				t.Errorf("policy:\n got %s\nwant %s", got, compactJSON(t, tt.want))
			}
		})
	}
	deny := rbacRules(t, fs, rbacv3.RBAC_DENY).GetPolicies()["ns[default]-policy[deny-admin]-rule[0]"]
	wantDeny := `{"permissions":[{"andRules":{"rules":[{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/admin"}}}]}}]}}],
 "principals":[{"andIds":{"ids":[{"notId":{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":".*/ns/default/.*"}}}}]}}}]}}]}`
	if got := compactJSON(t, protojson.Format(deny)); got != compactJSON(t, wantDeny) {
		t.Errorf("deny policy:\n got %s\nwant %s", got, compactJSON(t, wantDeny))
	}
}

func TestAuthorizationPolicyAllowNothingAndAllowAll(t *testing.T) {
	tests := []struct {
		name, spec, want string
	}{
		{"empty spec is allow-nothing", "{}", `{"permissions":[{"notRule":{"any":true}}],"principals":[{"notId":{"any":true}}]}`},
		{"rules: [{}] allows all", "{rules: [{}]}", `{"permissions":[{"andRules":{"rules":[{"any":true}]}}],"principals":[{"andIds":{"ids":[{"any":true}]}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := parseSecurity(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: default}\nspec: "+tt.spec+"\n")
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			allow := rbacRules(t, httpFiltersOf(t, p, reviewsClass, "inbound"), rbacv3.RBAC_ALLOW)
			got := compactJSON(t, protojson.Format(allow.GetPolicies()["ns[default]-policy[x]-rule[0]"]))
			if got != compactJSON(t, tt.want) {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAuthorizationPolicyValidation(t *testing.T) {
	tests := []struct {
		name, spec string
		want       []string // "code field" of each diagnostic
	}{
		{"custom", "{action: CUSTOM, provider: {name: ext}, rules: [{}]}", []string{"GM0104 spec.provider", "GM0113 spec.action"}},
		{"unknown when key", "{rules: [{when: [{key: request.foo, values: [x]}]}]}", []string{"GM0102 spec.rules[0].when[0].key"}},
		{"experimental key", "{rules: [{when: [{key: 'experimental.envoy.filters.a[b]', values: [x]}]}]}", []string{"GM0113 spec.rules[0].when[0].key"}},
		{"when without values", "{rules: [{when: [{key: source.ip}]}]}", []string{"GM0110 spec.rules[0].when[0]"}},
		{"bad ip block", "{rules: [{from: [{source: {ipBlocks: [10.0.0.300]}}]}]}", []string{"GM0102 spec.rules[0].from[0].source.ipBlocks[0]"}},
		{"bad port", "{rules: [{to: [{operation: {ports: [http]}}]}]}", []string{"GM0111 spec.rules[0].to[0].operation.ports[0]"}},
		{"empty source", "{rules: [{from: [{source: {}}]}]}", []string{"GM0102 spec.rules[0].from[0].source"}},
		{"wildcard in the middle", "{rules: [{to: [{operation: {paths: ['/a/*/b']}}]}]}", []string{"GM0102 spec.rules[0].to[0].operation.paths[0]"}},
		{"path template", "{rules: [{to: [{operation: {paths: ['/a/{*}/b']}}]}]}", []string{"GM0113 spec.rules[0].to[0].operation.paths[0]"}},
		{"spiffe prefix warns", "{rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/a/sa/b']}}]}]}", []string{"GM0102 spec.rules[0].from[0].source.principals[0]"}},
		{"targetRef", "{targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}}", []string{"GM0104 spec.targetRef"}},
		{"deny without rules", "{action: DENY}", []string{"GM0110 spec.rules"}},
		{"service accounts with principals", "{rules: [{from: [{source: {principals: [a], serviceAccounts: [ns/sa]}}]}]}", []string{"GM0114 spec.rules[0].from[0].source.serviceAccounts"}},
		{"trust domain wildcard in the middle", "{rules: [{from: [{source: {trustDomains: ['a*b']}}]}]}", []string{"GM0102 spec.rules[0].from[0].source.trustDomains[0]"}},
		{"valid", "{action: DENY, rules: [{when: [{key: 'request.headers[x-user]', values: ['*bot']}, {key: destination.port, notValues: ['22']}]}]}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := parseSecurity(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: default}\nspec: "+tt.spec+"\n")
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+d.Field)
			}
			if strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
				t.Errorf("diagnostics = %q; want %q (%v)", got, tt.want, diags)
			}
		})
	}
}

const requestAuthYAML = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: https://b.example
    jwksUri: https://b.example/jwks.json
    audiences: [reviews]
  - issuer: https://a.example
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}'
    fromHeaders: [{name: x-jwt}]
    forwardOriginalToken: true
`

func TestRequestAuthentication(t *testing.T) {
	fetched := `{"keys":[{"kty":"EC","crv":"P-256","kid":"b","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`
	tests := []struct {
		name     string
		opts     []Option
		wantDiag string // code severity of the jwksUri diagnostic
		wantJWKS string // origins-1's local_jwks (issuer b sorts second)
	}{
		{"fetched", []Option{WithJWKS(map[string][]byte{"https://b.example/jwks.json": []byte(fetched)})}, "", fetched},
		{"fetch failed", []Option{WithJWKSErrors(map[string]error{"https://b.example/jwks.json": errors.New("connection refused")})}, "GM0240 warning", rejectAllJWKS},
		{"validate does not fetch", nil, "GM0240 info", rejectAllJWKS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := parseSecurity(t, requestAuthYAML, tt.opts...)
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+string(d.Severity))
			}
			if strings.Join(got, ";") != tt.wantDiag {
				t.Fatalf("diagnostics = %q; want %q", got, tt.wantDiag)
			}
			if uris := p.JWKSURIs(); len(uris) != 1 || uris[0] != "https://b.example/jwks.json" {
				t.Errorf("JWKSURIs = %q", uris)
			}
			fs := httpFiltersOf(t, p, reviewsClass, "inbound")
			if fs[0].GetName() != jwtAuthnFilterName {
				t.Fatalf("first filter %s; want %s", fs[0].GetName(), jwtAuthnFilterName)
			}
			cfg := &jwtv3.JwtAuthentication{}
			if err := fs[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
				t.Fatal(err)
			}
			a, b := cfg.GetProviders()["origins-0"], cfg.GetProviders()["origins-1"]
			if a.GetIssuer() != "https://a.example" || b.GetIssuer() != "https://b.example" {
				t.Fatalf("providers not sorted by issuer: %v", cfg.GetProviders())
			}
			if got := b.GetLocalJwks().GetInlineString(); got != tt.wantJWKS {
				t.Errorf("origins-1 local_jwks = %s; want %s", got, tt.wantJWKS)
			}
			if !a.GetForward() || a.GetFromHeaders()[0].GetName() != "x-jwt" || a.GetPayloadInMetadata() != "payload" {
				t.Errorf("origins-0 = %v", a)
			}
			// Two providers: any of them, or all of {provider or allow_missing}.
			any := cfg.GetRules()[0].GetRequires().GetRequiresAny().GetRequirements()
			if len(any) != 3 || any[2].GetRequiresAll() == nil || len(any[2].GetRequiresAll().GetRequirements()) != 2 {
				t.Errorf("requirement = %v", cfg.GetRules()[0].GetRequires())
			}
		})
	}
}

func TestClaimRouteMatch(t *testing.T) {
	p, diags := parseSecurity(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {"@request.auth.claims.group": {exact: beta}}}]
    route: [{destination: {host: reviews}}]
  - match: [{withoutHeaders: {"@request.auth.claims[org][team]": {prefix: a}}}]
    route: [{destination: {host: reviews}}]
`)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	snap, err := p.Compile(reviewsClass, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := snap.Resources.GetResources(resourcev3.RouteType)["outbound"]
	got := compactJSON(t, protojson.Format(rc))
	for _, want := range []string{
		`"dynamicMetadata":[{"filter":"envoy.filters.http.jwt_authn","path":[{"key":"payload"},{"key":"group"}],"value":{"orMatch":{"valueMatchers":[{"listMatch":{"oneOf":{"stringMatch":{"exact":"beta"}}}},{"stringMatch":{"exact":"beta"}}]}}}]`,
		`"path":[{"key":"payload"},{"key":"org"},{"key":"team"}]`,
		`"invert":true`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("outbound routes lack %s:\n%s", want, got)
		}
	}
}

func TestAuthorizationPolicyTCP(t *testing.T) {
	p, diags := parseSecurity(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  rules:
  - to: [{operation: {ports: ["5432"]}}]
  - to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
    to: [{operation: {paths: [/admin]}}]
`)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	filters := p.authzFilters("default", nil, true)
	if len(filters) != 2 || filters[0].GetAction() != rbacv3.RBAC_DENY || filters[1].GetAction() != rbacv3.RBAC_ALLOW {
		t.Fatalf("filters = %v; want DENY then ALLOW", filters)
	}
	// ALLOW: the rule with an HTTP-only method is left out (a smaller allow).
	if _, ok := filters[1].GetPolicies()["ns[default]-policy[allow]-rule[1]"]; ok || len(filters[1].GetPolicies()) != 1 {
		t.Errorf("TCP ALLOW policies = %v; want rule[0] only", filters[1].GetPolicies())
	}
	// DENY: the HTTP-only path is dropped (a wider deny).
	deny := compactJSON(t, protojson.Format(filters[0].GetPolicies()["ns[default]-policy[deny]-rule[0]"]))
	want := `{"permissions":[{"andRules":{"rules":[{"any":true}]}}],"principals":[{"andIds":{"ids":[{"orIds":{"ids":[{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}]}}]}`
	if deny != want {
		t.Errorf("TCP DENY policy:\n got %s\nwant %s", deny, want)
	}

	l := &listenerv3.Listener{Name: "inbound_5432", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy"}}}}}
	if err := prependFilters(l, nil, []*listenerv3.Filter{{Name: rbacNetworkFilterName}}); err != nil {
		t.Fatal(err)
	}
	if got := l.GetFilterChains()[0].GetFilters(); len(got) != 2 || got[0].GetName() != rbacNetworkFilterName {
		t.Errorf("TCP chain filters = %v; want network rbac before tcp_proxy", got)
	}
}

func TestRequestAuthenticationOpenIDDiscovery(t *testing.T) {
	const discovery = "https://idp.example.com/.well-known/openid-configuration"
	keys := `{"keys":[{"kty":"EC","crv":"P-256","kid":"d","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`
	p, diags := parseSecurity(t, `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://idp.example.com/
`, WithJWKS(map[string][]byte{discovery: []byte(keys)}))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if got := p.JWKSURIs(); len(got) != 1 || got[0] != discovery {
		t.Fatalf("JWKSURIs = %q; want the issuer's discovery URL", got)
	}
	cfg := &jwtv3.JwtAuthentication{}
	if err := httpFiltersOf(t, p, reviewsClass, "inbound")[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.GetProviders()["origins-0"].GetLocalJwks().GetInlineString(); got != keys {
		t.Errorf("local_jwks = %s; want the discovered keys", got)
	}
}

// TestAuthorizationPolicyRootNamespace: a policy of WithRootNamespace's
// namespace applies mesh-wide; one of the default root namespace then does
// not.
func TestAuthorizationPolicyRootNamespace(t *testing.T) {
	for _, tt := range []struct {
		ns   string
		want bool
	}{{"mesh-root", true}, {DefaultRootNamespace, false}} {
		p, diags := parseSecurity(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: "+tt.ns+"}\nspec: {}\n", WithRootNamespace("mesh-root"))
		if diags.HasErrors() {
			t.Fatalf("diagnostics: %v", diags)
		}
		got := rbacRules(t, httpFiltersOf(t, p, reviewsClass, "inbound"), rbacv3.RBAC_ALLOW) != nil
		if got != tt.want {
			t.Errorf("policy in %s applies to default/reviews: %v, want %v", tt.ns, got, tt.want)
		}
	}
}

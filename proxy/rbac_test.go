package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Helpers building RBAC protos the way Istio's authz builder does.

func pAny() *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: true}}
}

func pAnd(ps ...*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func pOr(ps ...*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func pNot(p *rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_NotRule{NotRule: p}}
}

func pPathPrefix(prefix string) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{
		Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix}},
	}}}}
}

func pMethod(m string) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m}}},
	}}}
}

func pPort(port uint32) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: port}}
}

func idAny() *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Any{Any: true}}
}

func idAnd(ids ...*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_AndIds{AndIds: &rbacconfigv3.Principal_Set{Ids: ids}}}
}

func idOr(ids ...*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_OrIds{OrIds: &rbacconfigv3.Principal_Set{Ids: ids}}}
}

func idNot(id *rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_NotId{NotId: id}}
}

func idPrincipal(exact string) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{
		PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: exact}},
	}}}
}

func idNamespace(ns string) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{
		PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*/ns/" + ns + "/.*"}}},
	}}}
}

func idIP(addr string, bits uint32) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(bits)}}}
}

// idClaim is Istio's request.auth.claims[name] principal.
func idClaim(name, value string) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Metadata{Metadata: claimMatcher(name, value)}}
}

// claimMatcher is Istio's matcher of a JWT claim (RBAC principals and
// VirtualService routes alike): the claim as a list containing value, or a
// string equal to it.
func claimMatcher(name, value string) *matcherv3.MetadataMatcher {
	str := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}}}
	return &matcherv3.MetadataMatcher{
		Filter: config.JWTAuthnFilterName,
		Path: []*matcherv3.MetadataMatcher_PathSegment{
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "payload"}},
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: name}},
		},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
			{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: str}}}},
			str,
		}}}},
	}
}

func rbacConfig(action rbacconfigv3.RBAC_Action, policies map[string]*rbacconfigv3.Policy) *rbacv3.RBAC {
	return &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: action, Policies: policies}}
}

func policy(perms []*rbacconfigv3.Permission, ids ...*rbacconfigv3.Principal) *rbacconfigv3.Policy {
	return &rbacconfigv3.Policy{Permissions: perms, Principals: ids}
}

// neverMatch is Istio's policy for an ALLOW policy without rules.
var neverMatch = policy([]*rbacconfigv3.Permission{pNot(pAny())}, idNot(idAny()))

type rbacReq struct {
	method, path string
	peer         string // URI SAN of the verified client certificate; "" plaintext
	remote       string
	local        string
	claims       map[string]any
}

func (rq rbacReq) input(t *testing.T) *auth.AuthzInput {
	t.Helper()
	r := httptest.NewRequest(rq.method, "http://svc"+rq.path, nil)
	if rq.remote != "" {
		r.RemoteAddr = rq.remote
	}
	if rq.peer != "" {
		u, err := url.Parse(rq.peer)
		if err != nil {
			t.Fatal(err)
		}
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
	}
	var md routing.DynamicMetadata
	if rq.claims != nil {
		md = routing.DynamicMetadata{config.JWTAuthnFilterName: {"payload": rq.claims}}
	}
	local := rq.local
	if local == "" {
		local = "10.0.0.2:8080"
	}
	return auth.NewAuthzInput(r, local, md)
}

func TestRBACEngine(t *testing.T) {
	sleep := "spiffe://cluster.local/ns/default/sa/sleep"
	other := "spiffe://cluster.local/ns/prod/sa/web"
	tests := []struct {
		name string
		cfg  *rbacv3.RBAC
		req  rbacReq
		want bool
	}{
		{"allow: principal matches", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/", peer: sleep}, true},
		{"allow: other principal denied", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/", peer: other}, false},
		{"allow: plaintext has no principal", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/"}, false},
		{"allow: namespace regex", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idNamespace("prod"))))}),
			rbacReq{method: "GET", path: "/", peer: other}, true},
		{"allow: notPrincipals", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idNot(idOr(idPrincipal(sleep)))))}),
			rbacReq{method: "GET", path: "/", peer: sleep}, false},
		{"allow: method and path prefix", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("GET")), pOr(pPathPrefix("/public/")))}, idAnd(idAny()))}),
			rbacReq{method: "GET", path: "/public/x?q=1"}, true},
		{"allow: wrong method", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("GET")), pOr(pPathPrefix("/public/")))}, idAnd(idAny()))}),
			rbacReq{method: "POST", path: "/public/x"}, false},
		{"allow: dot segments normalized", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pPathPrefix("/public/")))}, idAnd(idAny()))}),
			rbacReq{method: "GET", path: "/public/../admin"}, false},
		{"deny: encoded dot segments normalized", rbacConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pPathPrefix("/admin")))}, idAnd(idAny()))}),
			rbacReq{method: "GET", path: "/public/%2E%2E/admin"}, false},
		{"allow: destination port", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pPort(8080)))}, idAnd(idAny()))}),
			rbacReq{method: "GET", path: "/"}, true},
		{"allow: ip block", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idIP("10.1.0.0", 16))))}),
			rbacReq{method: "GET", path: "/", remote: "10.1.2.3:5555"}, true},
		{"allow: ip outside block", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idIP("10.1.0.0", 16))))}),
			rbacReq{method: "GET", path: "/", remote: "10.2.2.3:5555"}, false},
		{"allow: claim in list", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("groups", "admin")))}),
			rbacReq{method: "GET", path: "/", claims: map[string]any{"groups": []any{"dev", "admin"}}}, true},
		{"allow: claim as string", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("role", "admin")))}),
			rbacReq{method: "GET", path: "/", claims: map[string]any{"role": "admin"}}, true},
		{"allow: claim missing", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idClaim("groups", "admin")))}),
			rbacReq{method: "GET", path: "/"}, false},
		{"allow-nothing", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": neverMatch}),
			rbacReq{method: "GET", path: "/", peer: sleep}, false},
		{"allow: no policies denies", rbacConfig(rbacconfigv3.RBAC_ALLOW, nil),
			rbacReq{method: "GET", path: "/"}, false},
		{"deny: matching policy", rbacConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("DELETE")))}, idAnd(idAny()))}),
			rbacReq{method: "DELETE", path: "/"}, false},
		{"deny: no match allows", rbacConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pMethod("DELETE")))}, idAnd(idAny()))}),
			rbacReq{method: "GET", path: "/"}, true},
		{"log never blocks", rbacConfig(rbacconfigv3.RBAC_LOG, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAny()}, idAny())}),
			rbacReq{method: "GET", path: "/"}, true},
		{"shadow rules only: not enforced", &rbacv3.RBAC{ShadowRules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW}},
			rbacReq{method: "GET", path: "/"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, fe := config.BuildRBAC(anyOf(t, tt.cfg))
			if fe != nil {
				t.Fatalf("building: %s: %v", fe.Field, fe.Err)
			}
			if got, _ := f.Allows(tt.req.input(t)); got != tt.want {
				t.Errorf("allows = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestRBACRejectsUnsupported(t *testing.T) {
	tests := []struct {
		name, field string
		cfg         *rbacv3.RBAC
	}{
		{"principal filter_state", ".rules.policies[p].principals[0]", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAny()}, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_FilterState{FilterState: &matcherv3.FilterStateMatcher{Key: "k"}}})})},
		{"permission uri_template", ".rules.policies[p].permissions[0]", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{Name: "t"}}}}, idAny())})},
		{"empty principals", ".rules.policies[p].principals", rbacConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAny()})})},
		{"track_per_rule_stats", "", &rbacv3.RBAC{RulesStatPrefix: "x", TrackPerRuleStats: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fe := config.BuildRBAC(anyOf(t, tt.cfg))
			if fe == nil {
				t.Fatalf("built; want an error at %q", tt.field)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q (%v); want %q", fe.Field, fe.Err, tt.field)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":            "/a/b",
		"/a/./b":          "/a/b",
		"/a/../b":         "/b",
		"/../a":           "/a",
		"/a/b/..":         "/a/",
		"/%61dmin":        "/admin",
		"/a%2Fb":          "/a%2Fb",
		"/p/%2e%2e/admin": "/admin",
		"/x?y=../z":       "/x",
	} {
		if got := auth.NormalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q; want %q", in, got, want)
		}
	}
}

// FuzzNormalizePath checks the invariants RBAC path rules rely on: the
// result is absolute and has no dot segments (it is not a fixed point for
// every input: like Envoy's, decoding is a single pass).
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/a/../b", "/%2e%2E/x", "/a/./b/", "//x/..", "/..%2f..", "a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := auth.NormalizePath(in)
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("normalizePath(%q) = %q; not absolute", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("normalizePath(%q) = %q; has a dot segment", in, out)
			}
		}
	})
}

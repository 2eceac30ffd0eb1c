package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/gitmesh/gitmesh/proxy/routing"
)

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
		{"allow: principal matches", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/", peer: sleep}, true},
		{"allow: other principal denied", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/", peer: other}, false},
		{"allow: plaintext has no principal", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDPrincipal(sleep))))}),
			rbacReq{method: "GET", path: "/"}, false},
		{"allow: namespace regex", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDNamespace("prod"))))}),
			rbacReq{method: "GET", path: "/", peer: other}, true},
		{"allow: notPrincipals", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDNot(prototest.IDOr(prototest.IDPrincipal(sleep)))))}),
			rbacReq{method: "GET", path: "/", peer: sleep}, false},
		{"allow: method and path prefix", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PMethod("GET")), prototest.POr(prototest.PPathPrefix("/public/")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "GET", path: "/public/x?q=1"}, true},
		{"allow: wrong method", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PMethod("GET")), prototest.POr(prototest.PPathPrefix("/public/")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "POST", path: "/public/x"}, false},
		{"allow: dot segments normalized", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PPathPrefix("/public/")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "GET", path: "/public/../admin"}, false},
		{"deny: encoded dot segments normalized", prototest.RBACConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PPathPrefix("/admin")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "GET", path: "/public/%2E%2E/admin"}, false},
		{"allow: destination port", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PPort(8080)))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "GET", path: "/"}, true},
		{"allow: ip block", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDIP("10.1.0.0", 16))))}),
			rbacReq{method: "GET", path: "/", remote: "10.1.2.3:5555"}, true},
		{"allow: ip outside block", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDOr(prototest.IDIP("10.1.0.0", 16))))}),
			rbacReq{method: "GET", path: "/", remote: "10.2.2.3:5555"}, false},
		{"allow: claim in list", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDClaim("groups", "admin")))}),
			rbacReq{method: "GET", path: "/", claims: map[string]any{"groups": []any{"dev", "admin"}}}, true},
		{"allow: claim as string", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDClaim("role", "admin")))}),
			rbacReq{method: "GET", path: "/", claims: map[string]any{"role": "admin"}}, true},
		{"allow: claim missing", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.PAny())}, prototest.IDAnd(prototest.IDClaim("groups", "admin")))}),
			rbacReq{method: "GET", path: "/"}, false},
		{"allow-nothing", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": prototest.NeverMatch}),
			rbacReq{method: "GET", path: "/", peer: sleep}, false},
		{"allow: no policies denies", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, nil),
			rbacReq{method: "GET", path: "/"}, false},
		{"deny: matching policy", prototest.RBACConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PMethod("DELETE")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "DELETE", path: "/"}, false},
		{"deny: no match allows", prototest.RBACConfig(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAnd(prototest.POr(prototest.PMethod("DELETE")))}, prototest.IDAnd(prototest.IDAny()))}),
			rbacReq{method: "GET", path: "/"}, true},
		{"log never blocks", prototest.RBACConfig(rbacconfigv3.RBAC_LOG, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAny()}, prototest.IDAny())}),
			rbacReq{method: "GET", path: "/"}, true},
		{"shadow rules only: not enforced", &rbacv3.RBAC{ShadowRules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW}},
			rbacReq{method: "GET", path: "/"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, fe := config.BuildRBAC(prototest.Any(t, tt.cfg))
			if fe != nil {
				t.Fatalf("building: %s: %v", fe.Field, fe.Err)
			}
			if got, _ := f.Allows(tt.req.input(t)); got != tt.want {
				t.Errorf("allows = %v; want %v", got, tt.want)
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

package proxy

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

func header(name string, sm *matcherv3.StringMatcher, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// missingAsEmpty sets treat_missing_header_as_empty on h.
func missingAsEmpty(h *routev3.HeaderMatcher) *routev3.HeaderMatcher {
	h.TreatMissingHeaderAsEmpty = true
	return h
}

func TestRouteMatchingEndToEnd(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	regexPath := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/items/[0-9]+"}}}
	ciPrefix := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/Upper"}, CaseSensitive: wrapperspb.Bool(false)}
	ciPath := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/Exact"}, CaseSensitive: wrapperspb.Bool(false)}
	query := func(q ...*routev3.QueryParameterMatcher) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"}, QueryParameters: q}
	}
	routes := []*routev3.Route{
		direct(regexPath, "regex-path"),
		direct(ciPrefix, "ci-prefix"),
		direct(ciPath, "ci-path"),
		direct(prefixMatch("/h", header("x-exact", strMatch("exact", "Val", false), false)), "h-exact"),
		direct(prefixMatch("/h", header("x-exact-ci", strMatch("exact", "val", true), false)), "h-exact-ci"),
		direct(prefixMatch("/h", header("x-prefix", strMatch("prefix", "pre", false), false)), "h-prefix"),
		direct(prefixMatch("/h", header("x-suffix", strMatch("suffix", "fix", false), false)), "h-suffix"),
		direct(prefixMatch("/h", header("x-contains", strMatch("contains", "MID", true), false)), "h-contains-ci"),
		direct(prefixMatch("/h", header("x-regex", strMatch("regex", "v[0-9]", false), false)), "h-regex"),
		direct(prefixMatch("/h", &routev3.HeaderMatcher{Name: "x-present", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), "h-present"),
		direct(prefixMatch("/h", header(":method", strMatch("exact", "POST", false), false)), "h-method"),
		direct(prefixMatch("/h", header(":authority", strMatch("prefix", "api.", false), false)), "h-authority"),
		direct(prefixMatch("/inv", header("x-user", strMatch("exact", "admin", false), true)), "inv-not-admin"),
		// Istio's withoutHeaders with a value: invert_match plus
		// treat_missing_header_as_empty, so a request without the header
		// matches too.
		direct(prefixMatch("/without", missingAsEmpty(header("x-debug", strMatch("exact", "1", false), true))), "without-debug"),
		direct(prefixMatch("/empty", missingAsEmpty(header("x-tag", strMatch("exact", "", false), false))), "empty-tag"),
		direct(prefixMatch("/absent", missingAsEmpty(&routev3.HeaderMatcher{Name: "x-present", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}})), "absent-as-present"),
		direct(query(&routev3.QueryParameterMatcher{Name: "id", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: strMatch("exact", "7", false)}}), "q-exact"),
		direct(query(&routev3.QueryParameterMatcher{Name: "id", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: strMatch("regex", "[a-z]+", false)}}), "q-regex"),
		direct(query(&routev3.QueryParameterMatcher{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}), "q-present"),
		direct(prefixMatch("/"), "default"),
	}
	res := r.outboundHTTP(vhost("svc", []string{"svc", "api.svc"}, routes...))
	r.push(res...)

	tests := []struct {
		name   string
		method string
		host   string
		path   string
		hdr    map[string]string
		want   string
	}{
		{name: "regex path full match", path: "/items/42", want: "regex-path"},
		{name: "regex path is anchored", path: "/items/42/x", want: "default"},
		{name: "regex path ignores query", path: "/items/42?x=1", want: "regex-path"},
		{name: "case-insensitive prefix", path: "/upper/x", want: "ci-prefix"},
		{name: "case-insensitive exact", path: "/EXACT", want: "ci-path"},
		{name: "header exact", path: "/h", hdr: map[string]string{"X-Exact": "Val"}, want: "h-exact"},
		{name: "header exact is case-sensitive", path: "/h", hdr: map[string]string{"X-Exact": "val"}, want: "default"},
		{name: "header exact ignore_case", path: "/h", hdr: map[string]string{"X-Exact-Ci": "VAL"}, want: "h-exact-ci"},
		{name: "header prefix", path: "/h", hdr: map[string]string{"X-Prefix": "prefixed"}, want: "h-prefix"},
		{name: "header suffix", path: "/h", hdr: map[string]string{"X-Suffix": "postfix"}, want: "h-suffix"},
		{name: "header contains ignore_case", path: "/h", hdr: map[string]string{"X-Contains": "a-mid-b"}, want: "h-contains-ci"},
		{name: "header regex anchored", path: "/h", hdr: map[string]string{"X-Regex": "v1"}, want: "h-regex"},
		{name: "header regex no partial", path: "/h", hdr: map[string]string{"X-Regex": "v12"}, want: "default"},
		{name: "header present", path: "/h", hdr: map[string]string{"X-Present": ""}, want: "h-present"},
		{name: "method", method: "POST", path: "/h", want: "h-method"},
		{name: "authority", host: "api.svc", path: "/h", want: "h-authority"},
		{name: "invert: header absent does not match (Envoy)", path: "/inv", want: "default"},
		{name: "invert: other value", path: "/inv", hdr: map[string]string{"X-User": "bob"}, want: "inv-not-admin"},
		{name: "invert: excluded value", path: "/inv", hdr: map[string]string{"X-User": "admin"}, want: "default"},
		{name: "missing as empty: inverted, header absent", path: "/without", want: "without-debug"},
		{name: "missing as empty: inverted, other value", path: "/without", hdr: map[string]string{"X-Debug": "0"}, want: "without-debug"},
		{name: "missing as empty: inverted, excluded value", path: "/without", hdr: map[string]string{"X-Debug": "1"}, want: "default"},
		{name: "missing as empty: exact empty, header absent", path: "/empty", want: "empty-tag"},
		{name: "missing as empty: exact empty, other value", path: "/empty", hdr: map[string]string{"X-Tag": "x"}, want: "default"},
		{name: "missing as empty: present, header absent", path: "/absent", want: "absent-as-present"},
		{name: "query exact", path: "/q?a=1&id=7", want: "q-exact"},
		{name: "query regex", path: "/q?id=abc", want: "q-regex"},
		{name: "query present", path: "/q?debug", want: "q-present"},
		{name: "query mismatch", path: "/q?id=7x", want: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, host := tt.method, tt.host
			if method == "" {
				method = "GET"
			}
			if host == "" {
				host = "svc"
			}
			resp, body := r.get(method, host, tt.path, tt.hdr)
			if resp.StatusCode != 200 || body != tt.want {
				t.Errorf("%s %s: status %d route %q; want 200 from %q", method, tt.path, resp.StatusCode, body, tt.want)
			}
		})
	}
	// Direct responses count with destination_service "unknown", as Envoy's.
	if len(r.metricLines("istio_requests_total", `destination_service="unknown"`, `response_code="200"`)) == 0 {
		t.Errorf("no direct-response series with destination_service unknown")
	}
}

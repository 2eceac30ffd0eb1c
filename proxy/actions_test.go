package proxy

import (
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

func redirect(m *routev3.RouteMatch, rd *routev3.RedirectAction) *routev3.Route {
	return &routev3.Route{Match: m, Action: &routev3.Route_Redirect{Redirect: rd}}
}

func TestRedirectAndDirectResponse(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	routes := []*routev3.Route{
		redirect(prefixMatch("/moved"), &routev3.RedirectAction{
			HostRedirect: "new.example.com", PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/landing"},
		}),
		redirect(prefixMatch("/old/"), &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new/"},
			ResponseCode:         routev3.RedirectAction_FOUND,
		}),
		redirect(prefixMatch("/secure"), &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"},
			PortRedirect:           8443, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT,
		}),
		redirect(prefixMatch("/see"), &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			ResponseCode:           routev3.RedirectAction_SEE_OTHER, StripQuery: true,
		}),
		redirect(prefixMatch("/re"), &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{
				Pattern: &matcherv3.RegexMatcher{Regex: "^/re/([a-z]+)/([0-9]+)$"}, Substitution: "/\\2/\\1",
			}},
			ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT,
		}),
		{Match: prefixMatch("/gone"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 410, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "gone for good"}},
		}}},
		{Match: prefixMatch("/empty"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 204}}},
	}
	r.push(r.outboundHTTP(vhost("svc", []string{"svc", "svc:80"}, routes...))...)

	tests := []struct {
		name, host, path string
		wantCode         int
		wantLocation     string
		wantBody         string
	}{
		{"host and path redirect keeps query", "svc", "/moved?a=1", 301, "http://new.example.com/landing?a=1", ""},
		{"prefix rewrite redirect", "svc", "/old/x/y?z", 302, "http://svc/new/x/y?z", ""},
		{"scheme and port redirect drops the request port", "svc:80", "/secure/p", 308, "https://svc:8443/secure/p", ""},
		{"https redirect strips :80 and the query", "svc:80", "/see?q=1", 303, "https://svc/see", ""},
		{"regex rewrite redirect", "svc", "/re/abc/42", 307, "http://svc/42/abc", ""},
		{"direct response with body", "svc", "/gone", 410, "", "gone for good"},
		{"direct response without body", "svc", "/empty", 204, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := r.get("GET", tt.host, tt.path, nil)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d; want %d", resp.StatusCode, tt.wantCode)
			}
			if got := resp.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location = %q; want %q", got, tt.wantLocation)
			}
			if body != tt.wantBody {
				t.Errorf("body = %q; want %q", body, tt.wantBody)
			}
		})
	}
	if len(r.metricLines("istio_requests_total", `destination_service="unknown"`, `response_code="301"`, `response_flags="-"`)) == 0 {
		t.Errorf("no redirect series with destination_service unknown")
	}
}

func headerOpt(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
}

func TestRewritesAndHeaders(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	b1 := echo(t, "b1", nil)
	const c1 = "outbound|80||b.default.svc.cluster.local"
	const c2 = "outbound|80|v2|b.default.svc.cluster.local"
	const (
		overwrite = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		appendH   = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	)
	prefix := withRoute(toCluster(prefixMatch("/api/"), c1), func(a *routev3.RouteAction) {
		a.PrefixRewrite = "/v2/"
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend.internal"}
	})
	exactPath := withRoute(toCluster(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}}, c1), func(a *routev3.RouteAction) {
		a.PrefixRewrite = "/auth/login"
	})
	regex := withRoute(toCluster(prefixMatch("/users/"), c1), func(a *routev3.RouteAction) {
		a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/users/([0-9]+)/profile$"}, Substitution: "/profiles/\\1"}
	})
	hdrRoute := toWeighted(prefixMatch("/hdr"), map[string]uint32{c2: 100})
	hdrRoute.RequestHeadersToAdd = []*corev3.HeaderValueOption{
		headerOpt("x-route", "route", overwrite), headerOpt("x-level", "route", overwrite), headerOpt("x-multi", "route", appendH),
	}
	hdrRoute.RequestHeadersToRemove = []string{"x-secret"}
	hdrRoute.ResponseHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-resp-route", "yes", overwrite)}
	hdrRoute.ResponseHeadersToRemove = []string{"x-backend-internal"}
	wc := hdrRoute.GetRoute().GetWeightedClusters().GetClusters()[0]
	wc.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-cluster", "v2", overwrite), headerOpt("x-level", "cluster", overwrite)}
	wc.ResponseHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-resp-cluster", "v2", overwrite)}
	wc.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: "v2.internal"}
	vh := vhost("svc", []string{"svc"}, prefix, exactPath, regex, hdrRoute, toCluster(prefixMatch("/"), c1))
	vh.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-level", "vhost", overwrite), headerOpt("x-multi", "vhost", appendH)}
	vh.ResponseHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-resp-vhost", "yes", overwrite)}
	res := r.outboundHTTP(vh)
	backend := echo(t, "b2", func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("X-Backend-Internal", "leak")
		return false
	})
	res = append(res,
		staticCluster(t, c1, "b.default.svc.cluster.local", []string{hostPort(b1)}),
		staticCluster(t, c2, "b.default.svc.cluster.local", []string{hostPort(backend)}),
	)
	r.push(res...)

	tests := []struct {
		name, path string
		hdr        map[string]string
		wantPath   string
		wantHost   string
		wantReq    map[string]string // X-Req-* the backend saw ("" = absent)
		wantResp   map[string]string
	}{
		{name: "prefix rewrite and host rewrite", path: "/api/items?x=1", wantPath: "/v2/items?x=1", wantHost: "backend.internal"},
		{name: "prefix rewrite of an exact path", path: "/login", wantPath: "/auth/login", wantHost: "svc"},
		{name: "regex rewrite keeps the query", path: "/users/42/profile?full=1", wantPath: "/profiles/42?full=1", wantHost: "svc"},
		{name: "regex rewrite no match keeps the path", path: "/users/x", wantPath: "/users/x", wantHost: "svc"},
		{
			name: "header mutations by level", path: "/hdr", hdr: map[string]string{"X-Secret": "s", "X-Multi": "client"},
			wantPath: "/hdr", wantHost: "v2.internal",
			// Envoy applies cluster, route, virtual host in that order: with
			// overwrite, the least specific level wins.
			wantReq:  map[string]string{"X-Route": "route", "X-Cluster": "v2", "X-Level": "vhost", "X-Multi": "client,route,vhost", "X-Secret": ""},
			wantResp: map[string]string{"X-Resp-Route": "yes", "X-Resp-Cluster": "v2", "X-Resp-Vhost": "yes", "X-Backend-Internal": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := r.get("GET", "svc", tt.path, tt.hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Seen-Path"); got != tt.wantPath {
				t.Errorf("upstream path = %q; want %q", got, tt.wantPath)
			}
			if got := resp.Header.Get("X-Seen-Host"); got != tt.wantHost {
				t.Errorf("upstream host = %q; want %q", got, tt.wantHost)
			}
			for k, want := range tt.wantReq {
				if got := resp.Header.Get("X-Req-" + k); got != want {
					t.Errorf("upstream %s = %q; want %q", k, got, want)
				}
			}
			for k, want := range tt.wantResp {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("response %s = %q; want %q", k, got, want)
				}
			}
		})
	}
}

func TestRouteConfigNACKs(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	r.push(r.outboundHTTP(vhost("svc", []string{"svc"}, direct(prefixMatch("/"), "ok")))...)
	badHeader := direct(prefixMatch("/"), "x")
	badHeader.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOpt("x-peer", "%DOWNSTREAM_REMOTE_ADDRESS%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)}
	tls := vhost("svc", []string{"svc"}, direct(prefixMatch("/"), "x"))
	tls.RequireTls = routev3.VirtualHost_EXTERNAL_ONLY
	mirrorUnknown := withRoute(toCluster(prefixMatch("/"), "nope"), func(a *routev3.RouteAction) {})
	mirrorUnknown.GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
	tests := []struct {
		name string
		vh   *routev3.VirtualHost
		want string
	}{
		{"header substitution", vhost("svc", []string{"svc"}, badHeader), `RouteConfiguration "outbound": virtual_hosts[0].routes[0].request_headers_to_add[0].header.value: value "%DOWNSTREAM_REMOTE_ADDRESS%": %COMMAND% substitutions: not supported`},
		{"require_tls external only", tls, `virtual_hosts[0].require_tls: EXTERNAL_ONLY: not supported`},
		{"cluster_header", vhost("svc", []string{"svc"}, mirrorUnknown), `virtual_hosts[0].routes[0].route: field cluster_header: not supported`},
		{"grpc_status abort ok but header_abort not", vhost("svc", []string{"svc"}, func() *routev3.Route {
			x := direct(prefixMatch("/"), "x")
			x.Match.RuntimeFraction = &corev3.RuntimeFractionalPercent{}
			return x
		}()), `virtual_hosts[0].routes[0].match: field runtime_fraction: not supported`},
		{"case_sensitive wrapper on regex is fine but an empty dynamic_metadata matcher is not", vhost("svc", []string{"svc"}, func() *routev3.Route {
			x := direct(prefixMatch("/"), "x")
			x.Match.CaseSensitive = wrapperspb.Bool(true)
			x.Match.DynamicMetadata = []*matcherv3.MetadataMatcher{{}}
			return x
		}()), `virtual_hosts[0].routes[0].match.dynamic_metadata[0].filter: empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.version++
			v := "bad-" + tt.name
			r.cp.set(t, r.node, snapshot(t, v, r.outboundHTTP(tt.vh)...))
			nack := r.cp.waitRequest(t, config.RouteType, func(req *discoveryRequest) bool {
				return req.GetErrorDetail() != nil && contains(req.GetErrorDetail().GetMessage(), tt.want)
			})
			_ = nack
			if resp, body := r.get("GET", "svc", "/", nil); resp.StatusCode != 200 || body != "ok" {
				t.Errorf("after the NACK: %d %q; want the last good config", resp.StatusCode, body)
			}
		})
	}
}

package proxy

import (
	"testing"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

func TestCORS(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	b := echo(t, "b", nil)
	const c = "outbound|80||web.default.svc.cluster.local"
	vhPolicy := &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{
			{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://app.example.com"}},
			{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `https://.*\.trusted\.io`}}},
		},
		AllowMethods: "GET,POST", AllowHeaders: "x-token", ExposeHeaders: "x-backend", MaxAge: "600",
		AllowCredentials: wrapperspb.Bool(true),
	}
	routePolicy := &corsv3.CorsPolicy{AllowMethods: "PUT"} // overrides methods only
	special := toCluster(prefixMatch("/special"), c)
	special.TypedPerFilterConfig = map[string]*anypb.Any{config.CORSFilterName: anyOf(t, routePolicy)}
	vh := vhost("web", []string{"web"}, special, toCluster(prefixMatch("/"), c))
	vh.TypedPerFilterConfig = map[string]*anypb.Any{config.CORSFilterName: anyOf(t, vhPolicy)}
	r.push(hcmListener(t, "outbound", r.out, "outbound", config.CORSFilterName, wellknown.Router), routeConfig("outbound", vh),
		staticCluster(t, c, "web.default.svc.cluster.local", []string{hostPort(b)}))

	preflight := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"}
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		wantUpstream       bool
		want               map[string]string // response headers ("" = absent)
	}{
		{name: "preflight answered by the proxy", method: "OPTIONS", path: "/", hdr: preflight("https://app.example.com"), want: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Allow-Methods": "GET,POST",
			"Access-Control-Allow-Headers": "x-token", "Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true",
		}},
		{name: "preflight regex origin", method: "OPTIONS", path: "/", hdr: preflight("https://x.trusted.io"), want: map[string]string{
			"Access-Control-Allow-Origin": "https://x.trusted.io",
		}},
		{name: "preflight from a disallowed origin is forwarded", method: "OPTIONS", path: "/", hdr: preflight("https://evil.com"), wantUpstream: true, want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}},
		{name: "route policy overrides methods, inherits origins", method: "OPTIONS", path: "/special", hdr: preflight("https://app.example.com"), want: map[string]string{
			"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Origin": "https://app.example.com",
		}},
		{name: "simple request gets allow-origin and expose", method: "GET", path: "/", hdr: map[string]string{"Origin": "https://app.example.com"}, wantUpstream: true, want: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Expose-Headers": "x-backend", "Access-Control-Allow-Credentials": "true",
		}},
		{name: "simple request from a disallowed origin", method: "GET", path: "/", hdr: map[string]string{"Origin": "https://evil.com"}, wantUpstream: true, want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}},
		{name: "no origin: not CORS", method: "GET", path: "/", wantUpstream: true, want: map[string]string{"Access-Control-Allow-Origin": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := r.get(tt.method, "web", tt.path, tt.hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := backendOf(resp) != ""; got != tt.wantUpstream {
				t.Errorf("reached upstream = %v; want %v", got, tt.wantUpstream)
			}
			for k, want := range tt.want {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q; want %q", k, got, want)
				}
			}
		})
	}
}

package routing_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzDomainMatch builds a route table from virtual hosts ("|" between
// hosts, "," between a host's domains) and checks findVirtualHost against
// refFindDomain, a plain reading of Envoy's rules: exact, then the longest
// "*suffix", then the longest "prefix*", then "*"; wildcards match at
// least one character; ASCII case is ignored; a port is part of the host.
// The table must build exactly when no domain repeats (ignoring case) and
// no virtual host is without domains.
func FuzzDomainMatch(f *testing.F) {
	// Istio's outbound route for a service port: every short name, with and
	// without the port, then a gateway's wildcard hosts.
	istio := "reviews.default.svc.cluster.local,reviews.default.svc.cluster.local:9080,reviews,reviews:9080," +
		"reviews.default.svc,reviews.default.svc:9080,reviews.default,reviews.default:9080,10.96.0.12,10.96.0.12:9080" +
		"|ratings.default.svc.cluster.local,ratings,ratings:9080|allow_any,*"
	for _, host := range []string{"reviews", "reviews:9080", "Reviews.Default.svc.cluster.local:9080", "ratings:8080", "10.96.0.12", "example.com"} {
		f.Add(istio, host)
	}
	gateway := "*.example.com|*.v1.example.com|api.*|api.v2.*|bookinfo.example.com,bookinfo.example.com:80|*"
	for _, host := range []string{"www.example.com", "a.v1.example.com", "example.com", ".example.com", "api.example.org", "api.v2.x", "api.", "BOOKINFO.example.com:80", "www.example.com:443"} {
		f.Add(gateway, host)
	}
	f.Add("*-bar.foo.com|foo-*|*.com", "baz-bar.foo.com")
	f.Add("*-bar.foo.com|foo-*", "-bar.foo.com")
	f.Add("a,A", "a")
	f.Add("x|", "x")
	f.Add("", "")
	f.Add("*,**,***|a*,*a", "aa")
	f.Fuzz(func(t *testing.T, spec, host string) {
		if !utf8.ValidString(spec) {
			return // xDS strings are UTF-8: protobuf refuses anything else
		}
		if !validHost(host) {
			return // the HTTP server answers 400 before routing
		}
		var vhosts []*routev3.VirtualHost
		for i, ds := range strings.Split(spec, "|") {
			var domains []string
			if ds != "" {
				domains = strings.Split(ds, ",")
			}
			vhosts = append(vhosts, prototest.VirtualHost(config.Itoa(i), domains))
		}
		table, fe := config.BuildRouteTable(prototest.RouteConfig("r", vhosts...), config.NewClusterRefs(nil), false)
		wantErr := refDomainsInvalid(vhosts)
		if (fe != nil) != wantErr {
			t.Fatalf("domains %q: build error %v; want error %v", spec, fe, wantErr)
		}
		if fe != nil {
			return
		}
		want := refFindDomain(vhosts, host)
		for _, h := range []string{host, strings.ToUpper(host), strings.ToLower(host)} {
			got := ""
			if vh := table.FindVirtualHost(h); vh != nil {
				got = vh.Name
			}
			if got != want {
				t.Fatalf("domains %q: findVirtualHost(%q) = %q; want %q", spec, h, got, want)
			}
		}
	})
}

// validHost reports whether host is made of the bytes an HTTP server lets
// through in a Host header (visible ASCII).
func validHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if host[i] <= ' ' || host[i] >= 0x7f {
			return false
		}
	}
	return true
}

// refLower lowercases ASCII letters only, as Envoy's LowerCaseString and
// absl::AsciiStrToLower do.
func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func refDomainsInvalid(vhosts []*routev3.VirtualHost) bool {
	seen := map[string]bool{}
	for _, v := range vhosts {
		if len(v.Domains) == 0 {
			return true
		}
		for _, d := range v.Domains {
			d = refLower(d)
			if seen[d] {
				return true
			}
			seen[d] = true
		}
	}
	return false
}

// refFindDomain returns the name of the virtual host Envoy picks for host,
// or "" for none, by trying every domain of every virtual host.
func refFindDomain(vhosts []*routev3.VirtualHost, host string) string {
	host = refLower(host)
	const (
		exact = iota
		suffix
		prefix
		star
		none
	)
	best, bestRank, bestLen := "", none, -1
	for _, v := range vhosts {
		for _, d := range v.Domains {
			d = refLower(d)
			rank, n := none, 0
			switch {
			case d == "*":
				rank = star
			case strings.HasPrefix(d, "*") && len(host) > len(d)-1 && strings.HasSuffix(host, d[1:]):
				rank, n = suffix, len(d)
			case strings.HasSuffix(d, "*") && len(host) > len(d)-1 && strings.HasPrefix(host, d[:len(d)-1]):
				rank, n = prefix, len(d)
			case d == host:
				rank = exact
			}
			if rank != none && (rank < bestRank || rank == bestRank && n > bestLen) {
				best, bestRank, bestLen = v.Name, rank, n
			}
		}
	}
	return best
}

// FuzzPathMatch builds a RouteMatch of each path specifier (0 prefix,
// 1 path, 2 safe_regex, 3 path_separated_prefix) with case_sensitive unset,
// true or false, and checks it against a request target: the path (the
// target without its query) must match as strings.HasPrefix, ==, a full
// regexp match, or "== or prefix followed by /" would say, ignoring ASCII
// case when case_sensitive is false (but never for regexes). A regex Go
// cannot compile must fail to build, and one it can must build.
func FuzzPathMatch(f *testing.F) {
	seeds := []struct {
		kind          uint8
		value         string
		caseSensitive uint8
		target        string
	}{
		{0, "/", 0, "/productpage"},
		{0, "/api/v1", 0, "/api/v1/reviews?user=jason"},
		{0, "/api/v1", 0, "/api/v1?x=/api/v2"},
		{0, "/static", 2, "/STATIC/css/app.css"},
		{1, "/productpage", 0, "/productpage?u=normal"},
		{1, "/login", 2, "/LOGIN"},
		{1, "/logout", 1, "/Logout"},
		{2, "/reviews/[0-9]+", 0, "/reviews/42?x=1"},
		{2, "/reviews/[0-9]+", 0, "/reviews/42/ratings"},
		{2, "/api/v[12]/.*", 2, "/API/v1/x"},
		{2, "/productpage|/static/.*", 0, "/static/img.png"},
		{2, "a|ab", 0, "ab"},
		{2, "/(?i)health", 0, "/HEALTH"},
		{2, "(unclosed", 0, "/"},
		{2, `[[:alpha:]]+\z`, 0, "/x"},
		{3, "/api", 0, "/api/v1"},
		{3, "/api", 0, "/apis"},
		{3, "/api", 2, "/API?x"},
		{3, "/", 0, "//"},
		{0, "/a?b", 0, "/a?b=1"},
		{0, "/%2F", 2, "/%2f"},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.value, s.caseSensitive, s.target)
	}
	f.Fuzz(func(t *testing.T, kind uint8, value string, caseSensitive uint8, target string) {
		if !utf8.ValidString(value) {
			return // xDS strings are UTF-8
		}
		m := &routev3.RouteMatch{}
		switch kind % 4 {
		case 0:
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: value}
		case 1:
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: value}
		case 2:
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}
		case 3:
			m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: value}
		}
		switch caseSensitive % 3 {
		case 1:
			m.CaseSensitive = wrapperspb.Bool(true)
		case 2:
			m.CaseSensitive = wrapperspb.Bool(false)
		}
		ignoreCase := caseSensitive%3 == 2

		built, fe := config.BuildMatch(m)
		var ref *regexp.Regexp
		if kind%4 == 2 {
			var err error
			if ref, err = regexp.Compile(value); err != nil {
				if fe == nil {
					t.Fatalf("safe_regex %q: built; want an error (%v)", value, err)
				}
				return
			}
			ref.Longest()
		}
		if fe != nil {
			t.Fatalf("%v: build error %s: %v", m, fe.Field, fe.Err)
		}

		r, path := requestFor(target)
		if r == nil {
			return
		}
		var want bool
		p, v := path, value
		if ignoreCase && kind%4 != 2 {
			p, v = refLower(p), refLower(v)
		}
		switch kind % 4 {
		case 0:
			want = strings.HasPrefix(p, v)
		case 1:
			want = p == v
		case 2:
			want = refFullMatch(ref, path)
		case 3:
			want = p == v || strings.HasPrefix(p, v+"/")
		}
		if got := built.Matches(r, r.URL.EscapedPath()); got != want {
			t.Fatalf("%v on %q: match %v; want %v", m, target, got, want)
		}
	})
}

// requestFor parses target as an HTTP server parses a request line's
// target, and returns the request and the target's path (without the
// query), or nil when the server would not route target as written (it
// refuses it, or routes on a re-escaped path).
func requestFor(target string) (*http.Request, string) {
	if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, "# \t\r\n") {
		return nil, ""
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, ""
	}
	path, _, _ := strings.Cut(target, "?")
	if u.EscapedPath() != path {
		return nil, ""
	}
	return &http.Request{Method: "GET", URL: u, Host: "h", Header: http.Header{}}, path
}

// refFullMatch reports whether re (compiled as leftmost-longest) matches
// all of s: the longest match starting leftmost spans s exactly when some
// match does.
func refFullMatch(re *regexp.Regexp, s string) bool {
	loc := re.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

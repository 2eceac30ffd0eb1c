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
)

// String matcher kinds as the fuzzers number them.
const (
	fuzzExact = iota
	fuzzPrefix
	fuzzSuffix
	fuzzContains
	fuzzRegex
	fuzzPresent
	fuzzKinds
)

var fuzzKindNames = [fuzzKinds]string{"exact", "prefix", "suffix", "contains", "regex", "present"}

// refStringMatch is Envoy's StringMatcher on v: ignore_case folds ASCII
// letters only and does not apply to regexes, which must match all of v.
// re is the regex compiled as leftmost-longest.
func refStringMatch(kind int, pattern string, re *regexp.Regexp, ignoreCase bool, v string) bool {
	if ignoreCase && kind != fuzzRegex {
		pattern, v = refLower(pattern), refLower(v)
	}
	switch kind {
	case fuzzExact:
		return v == pattern
	case fuzzPrefix:
		return strings.HasPrefix(v, pattern)
	case fuzzSuffix:
		return strings.HasSuffix(v, pattern)
	case fuzzContains:
		return strings.Contains(v, pattern)
	case fuzzRegex:
		return refFullMatch(re, v)
	}
	panic("unknown kind")
}

// refRegex compiles pattern as the reference matches regexes, or returns
// nil when kind is not a regex. ok is false for a regex Go cannot compile.
func refRegex(kind int, pattern string) (re *regexp.Regexp, ok bool) {
	if kind != fuzzRegex {
		return nil, true
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, false
	}
	re.Longest()
	return re, true
}

// FuzzHeaderMatch builds a HeaderMatcher of each kind (through string_match
// or the older per-kind fields) with every combination of ignore_case,
// invert_match, present_match and treat_missing_header_as_empty, and
// checks it on a request that carries the header (with one or more values,
// "\n" between them) or not, against Envoy's HeaderUtility rules: a
// missing header matches only an inverted presence check unless
// treat_missing_header_as_empty makes it an empty value; otherwise the
// result is the string match (or present_match) xor invert_match; repeated
// values are joined with ",".
func FuzzHeaderMatch(f *testing.F) {
	const (
		ignoreCase = 1 << iota
		invert
		presentMatch
		missingAsEmpty
		oldField
		headerPresent
	)
	seeds := []struct {
		kind    uint8
		flags   uint8
		name    string
		pattern string
		values  string
	}{
		{fuzzExact, headerPresent, "end-user", "jason", "jason"},
		{fuzzExact, headerPresent | oldField, "end-user", "jason", "Jason"},
		{fuzzExact, headerPresent | ignoreCase, "x-user", "admin", "ADMIN"},
		{fuzzExact, invert, "x-user", "admin", ""},
		{fuzzExact, invert | missingAsEmpty, "x-debug", "1", ""},
		{fuzzExact, invert | missingAsEmpty | headerPresent, "x-debug", "1", "1"},
		{fuzzExact, missingAsEmpty, "x-tag", "", ""},
		{fuzzPrefix, headerPresent, "user-agent", "Mozilla/", "Mozilla/5.0 (X11; Linux x86_64)"},
		{fuzzPrefix, headerPresent | ignoreCase, "cookie", "session=", "SESSION=abc; theme=dark"},
		{fuzzSuffix, headerPresent, ":authority", ".example.com", "api.example.com"},
		{fuzzSuffix, headerPresent | ignoreCase, "x-host", "COM", "a.b.com"},
		{fuzzContains, headerPresent | ignoreCase, "cookie", "USER=", "a=1; user=jason"},
		{fuzzContains, headerPresent, "x-forwarded-for", "10.0.", "192.168.0.1\n10.0.0.7"},
		{fuzzRegex, headerPresent, "x-version", "v[0-9]+", "v12"},
		{fuzzRegex, headerPresent | ignoreCase, "x-version", "v[0-9]+", "V1"},
		{fuzzRegex, headerPresent | oldField, "cookie", "^(.*?;)?(user=jason)(;.*)?$", "theme=dark; user=jason"},
		{fuzzPresent, presentMatch | headerPresent, "x-canary", "", ""},
		{fuzzPresent, presentMatch, "x-canary", "", ""},
		{fuzzPresent, invert | presentMatch, "x-canary", "", ""},
		{fuzzPresent, missingAsEmpty | presentMatch, "x-present", "", ""},
		{fuzzPresent, 0, "x-absent", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.flags, s.name, s.pattern, s.values)
	}
	f.Fuzz(func(t *testing.T, kindIn, flags uint8, name, pattern, values string) {
		kind := int(kindIn % fuzzKinds)
		if !utf8.ValidString(name) || !utf8.ValidString(pattern) {
			return // xDS strings are UTF-8
		}
		if name == "" || strings.HasPrefix(name, ":") && name != ":authority" {
			return // pseudo-headers other than :authority come from the request line
		}
		hm := &routev3.HeaderMatcher{
			Name:                      name,
			InvertMatch:               flags&invert != 0,
			TreatMissingHeaderAsEmpty: flags&missingAsEmpty != 0,
		}
		sm := &matcherv3.StringMatcher{IgnoreCase: flags&ignoreCase != 0}
		old := flags&oldField != 0 && !sm.IgnoreCase
		switch kind {
		case fuzzExact:
			sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: pattern}
			if old {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: pattern}
			}
		case fuzzPrefix:
			sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: pattern}
			if old {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: pattern}
			}
		case fuzzSuffix:
			sm.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: pattern}
			if old {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: pattern}
			}
		case fuzzContains:
			sm.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: pattern}
			if old {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ContainsMatch{ContainsMatch: pattern}
			}
		case fuzzRegex:
			sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: pattern}}
			if old {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: pattern}}
			}
		case fuzzPresent:
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: flags&presentMatch != 0}
		}
		if hm.HeaderMatchSpecifier == nil {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
		}
		built, err := config.BuildHeaderMatch(hm)
		re, ok := refRegex(kind, pattern)
		if !ok {
			if err == nil {
				t.Fatalf("regex %q: built; want an error", pattern)
			}
			return
		}
		if err != nil {
			t.Fatalf("%v: build error: %v", hm, err)
		}

		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Host: "h", Header: http.Header{}}
		present := flags&headerPresent != 0
		vals := strings.Split(values, "\n")
		switch {
		case name == ":authority": // always there
			present, r.Host, vals = true, values, []string{values}
		case present:
			r.Header[http.CanonicalHeaderKey(name)] = vals
		}

		var want bool
		value := strings.Join(vals, ",")
		switch {
		case !present && !hm.TreatMissingHeaderAsEmpty:
			want = kind == fuzzPresent && hm.GetPresentMatch() == hm.InvertMatch
		case kind == fuzzPresent:
			want = hm.GetPresentMatch() != hm.InvertMatch
		default:
			if !present {
				value = ""
			}
			want = refStringMatch(kind, pattern, re, sm.IgnoreCase, value) != hm.InvertMatch
		}
		if got := built.Matches(r); got != want {
			t.Fatalf("%v on %q (present %v): match %v; want %v", hm, values, present, got, want)
		}
	})
}

// FuzzQueryParamMatch builds a QueryParameterMatcher (string_match of each
// kind, or present_match) and checks it against a raw query string as
// Envoy reads one: "&"-separated parameters, split at the first "=", names
// and values compared undecoded (so malformed escapes are plain text), the
// first parameter of that name deciding.
func FuzzQueryParamMatch(f *testing.F) {
	seeds := []struct {
		kind       uint8
		ignoreCase bool
		name       string
		pattern    string
		query      string
	}{
		{fuzzExact, false, "id", "7", "a=1&id=7"},
		{fuzzExact, false, "id", "7", "id=8&id=7"},
		{fuzzExact, true, "user", "jason", "user=JASON"},
		{fuzzExact, false, "q", "a%20b", "q=a%20b"},
		{fuzzExact, false, "q", "a b", "q=a%20b"},
		{fuzzExact, false, "q", "%zz", "q=%zz&r=%"},
		{fuzzExact, false, "flag", "", "flag"},
		{fuzzPrefix, false, "version", "v1", "version=v1.2"},
		{fuzzSuffix, true, "file", ".JSON", "file=a.json"},
		{fuzzContains, false, "tags", "canary", "tags=a,canary,b"},
		{fuzzRegex, false, "id", "[a-z]+", "id=abc"},
		{fuzzRegex, false, "id", "[a-z]+", "id=abc1"},
		{fuzzRegex, false, "id", "(", "id=("},
		{fuzzPresent, false, "debug", "", "debug"},
		{fuzzPresent, false, "debug", "", "x=1&&debug=&"},
		{fuzzPresent, false, "debug", "", "debugger=1;debug=1"},
		{fuzzPresent, false, "a=b", "", "a=b=c"},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.ignoreCase, s.name, s.pattern, s.query)
	}
	f.Fuzz(func(t *testing.T, kindIn uint8, ignoreCase bool, name, pattern, query string) {
		kind := int(kindIn % fuzzKinds)
		if !utf8.ValidString(name) || !utf8.ValidString(pattern) {
			return // xDS strings are UTF-8
		}
		q := &routev3.QueryParameterMatcher{Name: name}
		if kind == fuzzPresent {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			sm := prototest.StrMatch(fuzzKindNames[kind], pattern, ignoreCase)
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		}
		m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{q}}
		built, fe := config.BuildMatch(m)
		re, ok := refRegex(kind, pattern)
		if !ok || name == "" {
			if fe == nil {
				t.Fatalf("%v: built; want an error", q)
			}
			return
		}
		if fe != nil {
			t.Fatalf("%v: build error %s: %v", q, fe.Field, fe.Err)
		}

		r, _ := requestFor("/?" + query)
		if r == nil {
			r = &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: query}, Host: "h", Header: http.Header{}}
		}
		v, found := refQueryValue(query, name)
		want := found && (kind == fuzzPresent || refStringMatch(kind, pattern, re, ignoreCase, v))
		if got := built.Matches(r, r.URL.EscapedPath()); got != want {
			t.Fatalf("%v on %q: match %v; want %v", q, query, got, want)
		}
	})
}

// refQueryValue scans query byte by byte for the first parameter named
// name and returns its raw value ("" when it has no "=").
func refQueryValue(query, name string) (string, bool) {
	start := 0
	for start <= len(query) {
		end := start
		for end < len(query) && query[end] != '&' {
			end++
		}
		param := query[start:end]
		eq := strings.IndexByte(param, '=')
		k, v := param, ""
		if eq >= 0 {
			k, v = param[:eq], param[eq+1:]
		}
		if k == name {
			return v, true
		}
		start = end + 1
	}
	return "", false
}

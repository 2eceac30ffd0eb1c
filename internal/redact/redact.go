// Package redact keeps secrets out of what gitmesh prints: URLs in logs,
// errors, status, history and metrics lose their userinfo and query, and
// URLs whose path may itself be a secret (webhooks) are shown as
// "https://host/…".
package redact

import (
	"net/url"
	"strings"
)

// URL returns raw without userinfo, query and fragment:
// "https://user:pass@git.example.com/mesh.git?token=x" becomes
// "https://git.example.com/mesh.git". The path is kept; use Opaque for URLs
// whose path may carry a secret. A string that does not parse as a URL with
// a host is returned with anything before an "@" removed, so an scp-like
// "user@host:path" or a mangled URL still loses its credentials.
func URL(raw string) string {
	u, ok := parse(raw)
	if !ok {
		return stripUserinfo(raw)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// Opaque returns only raw's scheme and host, with "/…" standing for any
// path, query or fragment: "https://hooks.example.com/T0/B1/secret" becomes
// "https://hooks.example.com/…". Webhook URLs often carry their token in
// the path.
func Opaque(raw string) string {
	u, ok := parse(raw)
	if !ok {
		return "<redacted url>"
	}
	out := u.Scheme + "://" + u.Host
	if strings.Trim(u.EscapedPath(), "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}

func parse(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, false
	}
	return u, true
}

// stripUserinfo removes "user[:password]@" from an scp-like address.
func stripUserinfo(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return s[:i+3] + rest[at+1:]
		}
		return s
	}
	if at := strings.Index(s, "@"); at >= 0 && !strings.Contains(s[:at], "/") {
		return s[at+1:]
	}
	return s
}

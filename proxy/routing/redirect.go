package routing

import (
	"net/http"
	"strings"
)

// RedirectAction is a built RedirectAction (or a virtual host's require_tls
// redirect): the proxy answers with a Location built as Envoy builds it.
type RedirectAction struct {
	Scheme string // "" keeps the request's scheme
	Host   string // "" keeps the request's host
	Port   string // ":<port>" or ""
	Path   string // path_redirect; "" keeps the path
	// PathHasQuery is a path_redirect with a query, which replaces the
	// request's.
	PathHasQuery  bool
	PrefixRewrite *string
	RegexRewrite  *RegexRewrite
	// StripQuery drops the query; Code is the redirect status (response_code, 301 by default).
	StripQuery bool
	Code       int
}

// HTTPSRedirect is what a virtual host with require_tls answers to a
// plaintext request.
var HTTPSRedirect = &RedirectAction{Scheme: "https", Code: http.StatusMovedPermanently}

// Location builds the redirect target for r, following Envoy's
// HTTP::Utility::newUri.
func (a *RedirectAction) Location(r *http.Request, match *RouteMatch) string {
	reqScheme := "http"
	if r.TLS != nil {
		reqScheme = "https"
	}
	scheme := reqScheme
	if a.Scheme != "" {
		scheme = a.Scheme
	}
	host := a.Host
	if host == "" {
		host = redirectHost(r, scheme, a.Port, reqScheme)
	}
	full := r.URL.RequestURI()
	path := full
	switch {
	case a.Path != "":
		path = a.Path
		if !a.PathHasQuery {
			if i := strings.IndexByte(full, '?'); i >= 0 {
				path += full[i:]
			}
		}
	case a.PrefixRewrite != nil:
		p, _, _ := strings.Cut(full, "?")
		n := MatchedPrefixLen(match, p)
		path = *a.PrefixRewrite + full[n:]
	case a.RegexRewrite != nil:
		p, q, _ := strings.Cut(full, "?")
		path = a.RegexRewrite.Re.ReplaceAllString(p, a.RegexRewrite.Substitution)
		if q != "" || strings.HasSuffix(full, "?") {
			path += "?" + q
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if a.StripQuery && !a.PathHasQuery {
		path, _, _ = strings.Cut(path, "?")
	}
	return scheme + "://" + host + a.Port + path
}

// redirectHost is Envoy's processRequestHost: the request's host, without
// its port when a new port is set or the scheme changes away from the
// request protocol's default port.
func redirectHost(r *http.Request, scheme, newPort, reqScheme string) string {
	host := r.Host
	end := strings.LastIndexByte(host, ':')
	if strings.HasPrefix(host, "[") {
		end = strings.LastIndex(host, "]:")
		if end >= 0 {
			end++
		}
	}
	if end < 0 {
		return host
	}
	port := host[end:]
	proto := r.Header.Get("X-Forwarded-Proto")
	if proto == "" {
		proto = reqScheme
	}
	remove := newPort != ""
	if scheme != proto {
		remove = remove || (proto == "https" && port == ":443") || (proto == "http" && port == ":80")
	}
	if remove {
		return host[:end]
	}
	return host
}

// DirectResponse is a built DirectResponseAction.
type DirectResponse struct {
	// Status and Body are the response's status and body.
	Status int
	Body   string
}

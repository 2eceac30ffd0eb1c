package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// redirectAction is a built RedirectAction (or a virtual host's require_tls
// redirect): the proxy answers with a Location built as Envoy builds it.
type redirectAction struct {
	scheme        string // "" keeps the request's scheme
	host          string // "" keeps the request's host
	port          string // ":<port>" or ""
	path          string // path_redirect; "" keeps the path
	pathHasQuery  bool
	prefixRewrite *string
	regexRewrite  *regexRewrite
	stripQuery    bool
	code          int
}

// httpsRedirect is what a virtual host with require_tls answers to a
// plaintext request.
var httpsRedirect = &redirectAction{scheme: "https", code: http.StatusMovedPermanently}

func buildRedirect(rd *routev3.RedirectAction) (*redirectAction, *fieldError) {
	if err := checkFields(rd, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	a := &redirectAction{host: rd.GetHostRedirect(), stripQuery: rd.GetStripQuery()}
	if rd.GetHttpsRedirect() {
		a.scheme = "https"
	}
	if s := rd.GetSchemeRedirect(); s != "" {
		a.scheme = strings.ToLower(s)
	}
	if p := rd.GetPortRedirect(); p != 0 {
		if p > 65535 {
			return nil, fieldErr(".port_redirect", "%d: must be 1-65535", p)
		}
		a.port = ":" + strconv.Itoa(int(p))
	}
	switch ps := rd.GetPathRewriteSpecifier().(type) {
	case nil:
	case *routev3.RedirectAction_PathRedirect:
		a.path = ps.PathRedirect
		a.pathHasQuery = strings.Contains(ps.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		// On a safe_regex route Envoy replaces the whole path (see
		// matchedPrefixLen).
		p := ps.PrefixRewrite
		a.prefixRewrite = &p
	case *routev3.RedirectAction_RegexRewrite:
		rr, err := buildRegexRewrite(ps.RegexRewrite)
		if err != nil {
			return nil, fieldErr(".regex_rewrite", "%w", err)
		}
		a.regexRewrite = rr
	}
	switch rd.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		a.code = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		a.code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		a.code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		a.code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		a.code = http.StatusPermanentRedirect
	default:
		return nil, fieldErr(".response_code", "%s: %w", rd.GetResponseCode(), errUnsupported)
	}
	return a, nil
}

// location builds the redirect target for r, following Envoy's
// Http::Utility::newUri.
func (a *redirectAction) location(r *http.Request, match *routeMatch) string {
	reqScheme := "http"
	if r.TLS != nil {
		reqScheme = "https"
	}
	scheme := reqScheme
	if a.scheme != "" {
		scheme = a.scheme
	}
	host := a.host
	if host == "" {
		host = redirectHost(r, scheme, a.port, reqScheme)
	}
	full := r.URL.RequestURI()
	path := full
	switch {
	case a.path != "":
		path = a.path
		if !a.pathHasQuery {
			if i := strings.IndexByte(full, '?'); i >= 0 {
				path += full[i:]
			}
		}
	case a.prefixRewrite != nil:
		p, _, _ := strings.Cut(full, "?")
		n := matchedPrefixLen(match, p)
		path = *a.prefixRewrite + full[n:]
	case a.regexRewrite != nil:
		p, q, _ := strings.Cut(full, "?")
		path = a.regexRewrite.re.ReplaceAllString(p, a.regexRewrite.sub)
		if q != "" || strings.HasSuffix(full, "?") {
			path += "?" + q
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if a.stripQuery && !a.pathHasQuery {
		path, _, _ = strings.Cut(path, "?")
	}
	return scheme + "://" + host + a.port + path
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

// serveRedirect answers the redirect a.
func serveRedirect(a *redirectAction, w http.ResponseWriter, r *http.Request, rs *requestState) {
	var m *routeMatch
	if rs.route != nil {
		m = &rs.route.match
	}
	w.Header().Set("Location", a.location(r, m))
	rs.code = a.code
	rs.finishHeaders(w.Header())
	w.WriteHeader(a.code)
}

// directResponse is a built DirectResponseAction.
type directResponse struct {
	status int
	body   string
}

func buildDirectResponse(d *routev3.DirectResponseAction, maxBody int) (*directResponse, *fieldError) {
	if err := checkFields(d, "status", "body"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	if d.GetStatus() < 200 || d.GetStatus() > 599 {
		return nil, fieldErr(".status", "%d: must be 200-599", d.GetStatus())
	}
	out := &directResponse{status: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		body, err := readDataSource(b)
		if err != nil {
			return nil, fieldErr(".body", "%w", err)
		}
		if len(body) > maxBody {
			// Envoy: "response body size is N bytes; maximum is M".
			return nil, fieldErr(".body", "response body size is %d bytes; maximum is %d (max_direct_response_body_size_bytes)", len(body), maxBody)
		}
		out.body = string(body)
	}
	return out, nil
}

// serveDirect answers the direct response d.
func serveDirect(d *directResponse, w http.ResponseWriter, rs *requestState) {
	rs.code = d.status
	h := w.Header()
	if d.body != "" {
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(d.body)))
	}
	rs.finishHeaders(h)
	w.WriteHeader(d.status)
	io.WriteString(w, d.body)
}

// readDataSource returns the bytes of an inline or file DataSource.
// Environment variables are not supported.
func readDataSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("filename: %w", err)
		}
		return b, nil
	case nil:
		return nil, fmt.Errorf("empty data source")
	default:
		return nil, fmt.Errorf("data source %T: %w", s, errUnsupported)
	}
}

package config

import (
	"fmt"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func buildRedirect(rd *routev3.RedirectAction) (*routing.RedirectAction, *fieldError) {
	if err := checkFields(rd, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	a := &routing.RedirectAction{Host: rd.GetHostRedirect(), StripQuery: rd.GetStripQuery()}
	if rd.GetHttpsRedirect() {
		a.Scheme = "https"
	}
	if s := rd.GetSchemeRedirect(); s != "" {
		a.Scheme = strings.ToLower(s)
	}
	if p := rd.GetPortRedirect(); p != 0 {
		if p > 65535 {
			return nil, fieldErr(".port_redirect", "%d: must be 1-65535", p)
		}
		a.Port = ":" + strconv.Itoa(int(p))
	}
	switch ps := rd.GetPathRewriteSpecifier().(type) {
	case nil:
	case *routev3.RedirectAction_PathRedirect:
		a.Path = ps.PathRedirect
		a.PathHasQuery = strings.Contains(ps.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:

		p := ps.PrefixRewrite
		a.PrefixRewrite = &p
	case *routev3.RedirectAction_RegexRewrite:
		rr, err := buildRegexRewrite(ps.RegexRewrite)
		if err != nil {
			return nil, fieldErr(".regex_rewrite", "%w", err)
		}
		a.RegexRewrite = rr
	}
	switch rd.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		a.Code = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		a.Code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		a.Code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		a.Code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		a.Code = http.StatusPermanentRedirect
	default:
		return nil, fieldErr(".response_code", "%s: %w", rd.GetResponseCode(), ErrUnsupported)
	}
	return a, nil
}

func buildDirectResponse(d *routev3.DirectResponseAction, maxBody int) (*routing.DirectResponse, *fieldError) {
	if err := checkFields(d, "status", "body"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	if d.GetStatus() < 200 || d.GetStatus() > 599 {
		return nil, fieldErr(".status", "%d: must be 200-599", d.GetStatus())
	}
	out := &routing.DirectResponse{Status: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		body, err := readDataSource(b)
		if err != nil {
			return nil, fieldErr(".body", "%w", err)
		}
		if len(body) > maxBody {

			return nil, fieldErr(".body", "response body size is %d bytes; maximum is %d (max_direct_response_body_size_bytes)", len(body), maxBody)
		}
		out.Body = string(body)
	}
	return out, nil
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
		return nil, fmt.Errorf("data source %T: %w", s, ErrUnsupported)
	}
}

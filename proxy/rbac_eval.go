package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// authzInput is what the RBAC matchers read of one request, gathered once
// per request (the request path reads only this and the built policies).
type authzInput struct {
	r *http.Request
	// path is the request path without query, normalized as Envoy's HCM
	// normalize_path does before filters see it.
	path string
	// direct is the downstream connection's peer address; remote the
	// client address by x-forwarded-for (see remoteAddr).
	direct, remote netip.Addr
	// local is the connection's destination (the original one for a
	// redirected connection).
	local netip.AddrPort
	meta  dynamicMetadata
}

func newAuthzInput(r *http.Request, origDst string, md dynamicMetadata) *authzInput {
	in := &authzInput{r: r, path: normalizePath(r.URL.EscapedPath()), meta: md}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		in.direct = ap.Addr().Unmap()
	}
	in.remote = remoteAddr(r, in.direct)
	switch {
	case origDst != "":
		if ap, err := netip.ParseAddrPort(origDst); err == nil {
			in.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	default:
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				in.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
		}
	}
	return in
}

// remoteAddr is Envoy's downstream remote address for an HCM without
// use_remote_address and xff_num_trusted_hops 0: the last address of
// x-forwarded-for when it has one, else the connection's peer.
func remoteAddr(r *http.Request, direct netip.Addr) netip.Addr {
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return direct
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
		return a.Unmap()
	}
	return direct
}

// allows runs the filter on a request: whether it may continue, and the
// name of the policy that matched ("" when none did). A filter without
// rules allows everything.
func (f *rbacFilter) allows(in *authzInput) (bool, string) {
	if !f.enforce {
		return true, ""
	}
	matched := ""
	for i := range f.policies {
		if f.policies[i].matches(in) {
			matched = f.policies[i].name
			break
		}
	}
	switch f.action {
	case rbacAllow:
		return matched != "", matched
	case rbacDeny:
		return matched == "", matched
	}
	return true, matched // LOG: never blocks
}

func (p *rbacPolicy) matches(in *authzInput) bool {
	return anyMatches(p.permissions, in) && anyMatches(p.principals, in)
}

// matches evaluates a built Permission or Principal.
func (p *rbacRule) matches(in *authzInput) bool {
	switch p.kind {
	case ruleAny:
		return true
	case ruleAnd:
		for i := range p.children {
			if !p.children[i].matches(in) {
				return false
			}
		}
		return true
	case ruleOr:
		return anyMatches(p.children, in)
	case ruleNot:
		return !p.children[0].matches(in)
	case ruleHeader:
		return p.header.matches(in.r)
	case ruleURLPath:
		return p.str.matches(in.path)
	case ruleMetadata:
		return p.metadata.matches(in.meta)
	case ruleDestIP:
		return in.local.IsValid() && p.cidr.Contains(in.local.Addr())
	case ruleDestPort:
		return in.local.IsValid() && uint32(in.local.Port()) == p.port
	case ruleDestPortRange:
		port := uint32(in.local.Port())
		return in.local.IsValid() && port >= p.port && port < p.portEnd
	case ruleSNI:
		sni := ""
		if in.r.TLS != nil {
			sni = in.r.TLS.ServerName
		}
		return p.str.matches(sni)
	case ruleAuthenticated:
		return authenticatedMatches(in.r, p.str)
	case ruleDirectRemoteIP:
		return in.direct.IsValid() && p.cidr.Contains(in.direct)
	case ruleRemoteIP:
		return in.remote.IsValid() && p.cidr.Contains(in.remote)
	}
	return false
}

// anyMatches reports whether one of rules matches (an or_rules/or_ids, and
// a policy's permissions and principals lists).
func anyMatches(rules []rbacRule, in *authzInput) bool {
	for i := range rules {
		if rules[i].matches(in) {
			return true
		}
	}
	return false
}

// authenticatedMatches is Envoy's Authenticated principal: the connection
// must be TLS; without principal_name that is enough, otherwise a URI SAN,
// else a DNS SAN, else the subject of the verified peer certificate must
// match. A connection without a peer certificate has no principal.
func authenticatedMatches(r *http.Request, name *stringMatch) bool {
	if r.TLS == nil {
		return false
	}
	if name == nil {
		return true
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	leaf := r.TLS.PeerCertificates[0]
	if len(leaf.URIs) > 0 {
		for _, u := range leaf.URIs {
			if name.matches(u.String()) {
				return true
			}
		}
		return false
	}
	if len(leaf.DNSNames) > 0 {
		for _, d := range leaf.DNSNames {
			if name.matches(d) {
				return true
			}
		}
		return false
	}
	return name.matches(leaf.Subject.String())
}

// normalizePath returns an escaped request path as Envoy's normalize_path
// (Istio's default BASE normalization) leaves it: percent-encoded
// unreserved characters decoded, dot segments removed (RFC 3986 5.2.4),
// without the query. The RBAC url_path matchers see this form, so
// "/public/../admin" is checked as "/admin".
func normalizePath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if strings.IndexByte(p, '%') >= 0 {
		var b strings.Builder
		for i := 0; i < len(p); i++ {
			if p[i] == '%' && i+2 < len(p) {
				if c, ok := unhex2(p[i+1], p[i+2]); ok && isUnreserved(c) {
					b.WriteByte(c)
					i += 2
					continue
				}
			}
			b.WriteByte(p[i])
		}
		p = b.String()
	}
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex2(a, b byte) (byte, bool) {
	hi, ok1 := unhex(a)
	lo, ok2 := unhex(b)
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

package auth

import (
	"github.com/gitmesh/gitmesh/proxy/match"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// AuthzInput is what the RBAC matchers read of one request, gathered once
// per request (the request path reads only this and the built policies).
type AuthzInput struct {
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
	// Meta is the request's dynamic metadata (JWT payloads), for the
	// metadata matchers.
	Meta routing.DynamicMetadata
}

// NewAuthzInput gathers what the matchers read of r. origDst is the
// original destination of a redirected connection ("": the local
// address); md is the request's dynamic metadata.
func NewAuthzInput(r *http.Request, origDst string, md routing.DynamicMetadata) *AuthzInput {
	in := &AuthzInput{r: r, path: NormalizePath(r.URL.EscapedPath()), Meta: md}
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

// Allows runs the filter on a request: whether it may continue, and the
// name of the policy that matched ("" when none did). A filter without
// rules allows everything.
func (f *RBACFilter) Allows(in *AuthzInput) (bool, string) {
	if !f.Enforce {
		return true, ""
	}
	matched := ""
	for i := range f.Policies {
		if f.Policies[i].Matches(in) {
			matched = f.Policies[i].Name
			break
		}
	}
	switch f.Action {
	case RBACAllow:
		return matched != "", matched
	case RBACDeny:
		return matched == "", matched
	}
	return true, matched // LOG: never blocks
}

// Matches reports whether any permission and any principal match.
func (p *RBACPolicy) Matches(in *AuthzInput) bool {
	return anyMatches(p.Permissions, in) && anyMatches(p.Principals, in)
}

// Matches evaluates a built Permission or Principal.
func (p *RBACRule) Matches(in *AuthzInput) bool {
	switch p.Kind {
	case RuleAny:
		return true
	case RuleAnd:
		for i := range p.Children {
			if !p.Children[i].Matches(in) {
				return false
			}
		}
		return true
	case RuleOr:
		return anyMatches(p.Children, in)
	case RuleNot:
		return !p.Children[0].Matches(in)
	case RuleHeader:
		return p.Header.Matches(in.r)
	case RuleURLPath:
		return p.Str.Matches(in.path)
	case RuleMetadata:
		return p.Metadata.Matches(in.Meta)
	case RuleDestIP:
		return in.local.IsValid() && p.CIDR.Contains(in.local.Addr())
	case RuleDestPort:
		return in.local.IsValid() && uint32(in.local.Port()) == p.Port
	case RuleDestPortRange:
		port := uint32(in.local.Port())
		return in.local.IsValid() && port >= p.Port && port < p.PortEnd
	case RuleSNI:
		sni := ""
		if in.r.TLS != nil {
			sni = in.r.TLS.ServerName
		}
		return p.Str.Matches(sni)
	case RuleAuthenticated:
		return authenticatedMatches(in.r, p.Str)
	case RuleDirectRemoteIP:
		return in.direct.IsValid() && p.CIDR.Contains(in.direct)
	case RuleRemoteIP:
		return in.remote.IsValid() && p.CIDR.Contains(in.remote)
	}
	return false
}

// anyMatches reports whether one of rules matches (an or_rules/or_ids, and
// a policy's permissions and principals lists).
func anyMatches(rules []RBACRule, in *AuthzInput) bool {
	for i := range rules {
		if rules[i].Matches(in) {
			return true
		}
	}
	return false
}

// authenticatedMatches is Envoy's Authenticated principal: the connection
// must be TLS; without principal_name that is enough, otherwise a URI SAN,
// else a DNS SAN, else the subject of the verified peer certificate must
// match. A connection without a peer certificate has no principal.
func authenticatedMatches(r *http.Request, name *match.StringMatch) bool {
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
			if name.Matches(u.String()) {
				return true
			}
		}
		return false
	}
	if len(leaf.DNSNames) > 0 {
		for _, d := range leaf.DNSNames {
			if name.Matches(d) {
				return true
			}
		}
		return false
	}
	return name.Matches(leaf.Subject.String())
}

// NormalizePath returns an escaped request path as Envoy's normalize_path
// (Istio's default BASE normalization) leaves it: percent-encoded
// unreserved characters decoded, dot segments removed (RFC 3986 5.2.4),
// without the query. The RBAC url_path matchers see this form, so
// "/public/../admin" is checked as "/admin".
func NormalizePath(p string) string {
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

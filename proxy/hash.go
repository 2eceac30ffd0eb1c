package proxy

import (
	"encoding/hex"
	"fmt"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"net"
	"net/http"
	"strconv"
)

// requestHash evaluates a route's hash policies as Envoy does: each
// policy that yields a value is folded in (rotate left, xor); a terminal
// one that yields a value ends the evaluation. A cookie policy with a ttl
// generates the cookie when the request lacks it (rs.setCookie).
func requestHash(policies []upstream.HashPolicy, r *http.Request, rs *requestState) (uint64, bool) {
	var h uint64
	found := false
	for i := range policies {
		p := &policies[i]
		var v string
		ok := false
		switch p.Kind {
		case upstream.HashHeader:
			v, ok = routing.HeaderValue(r, p.Name)
		case upstream.HashCookie:
			if c, err := r.Cookie(p.Name); err == nil {
				v, ok = c.Value, true
			} else if p.TTL != nil {
				v, ok = generatedCookie(r), true
				rs.setCookie = setCookieValue(p, v)
			}
		case upstream.HashSourceIP:
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			v, ok = host, err == nil
		case upstream.HashQuery:
			v, ok = routing.QueryValue(r.URL.RawQuery, p.Name)
		}
		if !ok {
			continue
		}
		k := upstream.HashString(v)
		if found {
			h = (h<<1 | h>>63) ^ k
		} else {
			h, found = k, true
		}
		if p.Terminal {
			break
		}
	}
	return h, found
}

// generatedCookie is the value of a cookie the proxy generates for a
// hash policy: a hash of the client's address, as Envoy derives it.
func generatedCookie(r *http.Request) string {
	var b [8]byte
	h := upstream.HashString(r.RemoteAddr)
	for i := range b {
		b[i] = byte(h >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// setCookieValue formats the Set-Cookie header of a generated cookie as
// Envoy does.
func setCookieValue(p *upstream.HashPolicy, value string) string {
	s := fmt.Sprintf("%s=%q", p.Name, value)
	if *p.TTL > 0 {
		s += "; Max-Age=" + strconv.Itoa(int(p.TTL.Seconds()))
	}
	if p.Path != "" {
		s += "; Path=" + p.Path
	}
	return s + "; HttpOnly"
}

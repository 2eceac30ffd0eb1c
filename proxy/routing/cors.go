package routing

import (
	"net/http"

	"github.com/gitmesh/gitmesh/proxy/match"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

// CORSPolicy is a route's effective CORS policy: per attribute, the route's
// typed_per_filter_config value if set, else the virtual host's (Envoy's
// most-specific-wins merge).
type CORSPolicy struct {
	// Origins is allow_origin_string_match; AllowMethods, AllowHeaders,
	// ExposeHeaders and MaxAge are copied into the CORS response headers.
	Origins          []*match.StringMatch
	AllowMethods     string
	AllowHeaders     string
	ExposeHeaders    string
	MaxAge           string
	AllowCredentials *bool
	// Enabled is filter_enabled (nil: always).
	Enabled *upstream.Fraction
	// AllowPrivateNetwork answers Access-Control-Request-Private-Network.
	AllowPrivateNetwork *bool
	// ForwardNotMatching forwards preflights whose origin is not allowed
	// (Envoy's default) instead of answering them.
	ForwardNotMatching *bool
}

// MergeCORS returns the per-attribute merge of the more specific policy a
// over b; nil when both are nil.
func MergeCORS(a, b *CORSPolicy) *CORSPolicy {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	m := *a
	if m.Origins == nil {
		m.Origins = b.Origins
	}
	pick := func(x, y string) string {
		if x != "" {
			return x
		}
		return y
	}
	m.AllowMethods = pick(a.AllowMethods, b.AllowMethods)
	m.AllowHeaders = pick(a.AllowHeaders, b.AllowHeaders)
	m.ExposeHeaders = pick(a.ExposeHeaders, b.ExposeHeaders)
	m.MaxAge = pick(a.MaxAge, b.MaxAge)
	if m.AllowCredentials == nil {
		m.AllowCredentials = b.AllowCredentials
	}
	if m.Enabled == nil {
		m.Enabled = b.Enabled
	}
	if m.AllowPrivateNetwork == nil {
		m.AllowPrivateNetwork = b.AllowPrivateNetwork
	}
	if m.ForwardNotMatching == nil {
		m.ForwardNotMatching = b.ForwardNotMatching
	}
	return &m
}

// OriginAllowed reports whether an Origin is allowed ("*" allows any).
func (c *CORSPolicy) OriginAllowed(origin string) bool {
	for _, m := range c.Origins {
		if m.Kind == match.StrExact && m.Value == "*" || m.Matches(origin) {
			return true
		}
	}
	return false
}

// Decorate adds the CORS headers of an allowed simple request's response.
func (c *CORSPolicy) Decorate(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	if c.AllowCredentials != nil && *c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.ExposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
	}
}

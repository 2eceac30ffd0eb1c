package proxy

import (
	"net/http"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// corsFilterName is the HTTP filter (and typed_per_filter_config key) of
// Envoy's CORS filter.
const corsFilterName = "envoy.filters.http.cors"

// corsPolicy is a route's effective CORS policy: per attribute, the route's
// typed_per_filter_config value if set, else the virtual host's (Envoy's
// most-specific-wins merge).
type corsPolicy struct {
	origins          []*stringMatch
	allowMethods     string
	allowHeaders     string
	exposeHeaders    string
	maxAge           string
	allowCredentials *bool
	enabled          *fraction
	// allowPrivateNetwork answers Access-Control-Request-Private-Network.
	allowPrivateNetwork *bool
	// forwardNotMatching forwards preflights whose origin is not allowed
	// (Envoy's default) instead of answering them.
	forwardNotMatching *bool
}

// buildCORS decodes a CorsPolicy from a typed_per_filter_config entry.
func buildCORS(a *anypb.Any) (*corsPolicy, *fieldError) {
	p := &corsv3.CorsPolicy{}
	if err := a.UnmarshalTo(p); err != nil {
		return nil, fieldErr("", "decoding CorsPolicy: %w", err)
	}
	if err := checkFields(p, "allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers",
		"max_age", "allow_credentials", "filter_enabled", "allow_private_network_access", "forward_not_matching_preflights"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	c := &corsPolicy{
		allowMethods: p.GetAllowMethods(), allowHeaders: p.GetAllowHeaders(),
		exposeHeaders: p.GetExposeHeaders(), maxAge: p.GetMaxAge(),
	}
	for i, sm := range p.GetAllowOriginStringMatch() {
		m, err := buildStringMatch(sm)
		if err != nil {
			return nil, fieldErr(".allow_origin_string_match["+itoa(i)+"]", "%w", err)
		}
		c.origins = append(c.origins, m)
	}
	if v := p.GetAllowCredentials(); v != nil {
		b := v.GetValue()
		c.allowCredentials = &b
	}
	if v := p.GetAllowPrivateNetworkAccess(); v != nil {
		b := v.GetValue()
		c.allowPrivateNetwork = &b
	}
	if v := p.GetForwardNotMatchingPreflights(); v != nil {
		b := v.GetValue()
		c.forwardNotMatching = &b
	}
	if fe := p.GetFilterEnabled(); fe != nil {
		if err := checkFields(fe, "default_value", "runtime_key"); err != nil {
			return nil, fieldErr(".filter_enabled", "%w", err)
		}
		f, err := buildFraction(fe.GetDefaultValue())
		if err != nil {
			return nil, fieldErr(".filter_enabled.default_value", "%w", err)
		}
		c.enabled = &f
	}
	return c, nil
}

// mergeCORS returns the per-attribute merge of the more specific policy a
// over b; nil when both are nil.
func mergeCORS(a, b *corsPolicy) *corsPolicy {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	m := *a
	if m.origins == nil {
		m.origins = b.origins
	}
	pick := func(x, y string) string {
		if x != "" {
			return x
		}
		return y
	}
	m.allowMethods = pick(a.allowMethods, b.allowMethods)
	m.allowHeaders = pick(a.allowHeaders, b.allowHeaders)
	m.exposeHeaders = pick(a.exposeHeaders, b.exposeHeaders)
	m.maxAge = pick(a.maxAge, b.maxAge)
	if m.allowCredentials == nil {
		m.allowCredentials = b.allowCredentials
	}
	if m.enabled == nil {
		m.enabled = b.enabled
	}
	if m.allowPrivateNetwork == nil {
		m.allowPrivateNetwork = b.allowPrivateNetwork
	}
	if m.forwardNotMatching == nil {
		m.forwardNotMatching = b.forwardNotMatching
	}
	return &m
}

func (c *corsPolicy) originAllowed(origin string) bool {
	for _, m := range c.origins {
		if m.kind == strExact && m.value == "*" || m.matches(origin) {
			return true
		}
	}
	return false
}

// serveCORS runs the CORS filter for a request that carries an Origin: it
// answers an allowed preflight itself (200 with the Access-Control-Allow-*
// headers) and reports true; for other allowed requests it records the
// origin so the response gets Access-Control-Allow-Origin.
func serveCORS(c *corsPolicy, w http.ResponseWriter, r *http.Request, rs *requestState) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || (c.enabled != nil && !c.enabled.roll()) {
		return false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !c.originAllowed(origin) {
		if preflight && c.forwardNotMatching != nil && !*c.forwardNotMatching {
			rs.code = http.StatusOK
			w.WriteHeader(http.StatusOK)
			return true
		}
		return false
	}
	if !preflight {
		rs.corsOrigin = origin
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if c.allowCredentials != nil && *c.allowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.allowMethods != "" {
		h.Set("Access-Control-Allow-Methods", c.allowMethods)
	}
	if c.allowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", c.allowHeaders)
	}
	if c.maxAge != "" {
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	if c.allowPrivateNetwork != nil && *c.allowPrivateNetwork && r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	rs.code = http.StatusOK
	w.WriteHeader(http.StatusOK)
	return true
}

// decorate adds the CORS headers of an allowed simple request's response.
func (c *corsPolicy) decorate(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	if c.allowCredentials != nil && *c.allowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.exposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.exposeHeaders)
	}
}

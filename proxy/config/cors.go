package config

import (
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"google.golang.org/protobuf/types/known/anypb"
)

// CORSFilterName is the HTTP filter (and typed_per_filter_config key) of
// Envoy's CORS filter.
const CORSFilterName = "envoy.filters.http.cors"

// buildCORS decodes a CorsPolicy from a typed_per_filter_config entry.
func buildCORS(a *anypb.Any) (*routing.CORSPolicy, *fieldError) {
	p := &corsv3.CorsPolicy{}
	if err := a.UnmarshalTo(p); err != nil {
		return nil, fieldErr("", "decoding CorsPolicy: %w", err)
	}
	if err := checkFields(p, "allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers",
		"max_age", "allow_credentials", "filter_enabled", "allow_private_network_access", "forward_not_matching_preflights"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	c := &routing.CORSPolicy{
		AllowMethods: p.GetAllowMethods(), AllowHeaders: p.GetAllowHeaders(),
		ExposeHeaders: p.GetExposeHeaders(), MaxAge: p.GetMaxAge(),
	}
	for i, sm := range p.GetAllowOriginStringMatch() {
		m, err := buildStringMatch(sm)
		if err != nil {
			return nil, fieldErr(".allow_origin_string_match["+Itoa(i)+"]", "%w", err)
		}
		c.Origins = append(c.Origins, m)
	}
	if v := p.GetAllowCredentials(); v != nil {
		b := v.GetValue()
		c.AllowCredentials = &b
	}
	if v := p.GetAllowPrivateNetworkAccess(); v != nil {
		b := v.GetValue()
		c.AllowPrivateNetwork = &b
	}
	if v := p.GetForwardNotMatchingPreflights(); v != nil {
		b := v.GetValue()
		c.ForwardNotMatching = &b
	}
	if fe := p.GetFilterEnabled(); fe != nil {
		if err := checkFields(fe, "default_value", "runtime_key"); err != nil {
			return nil, fieldErr(".filter_enabled", "%w", err)
		}
		f, err := buildFraction(fe.GetDefaultValue())
		if err != nil {
			return nil, fieldErr(".filter_enabled.default_value", "%w", err)
		}
		c.Enabled = &f
	}
	return c, nil
}

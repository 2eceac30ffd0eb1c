package config

import (
	"encoding/json"
	"fmt"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"
	"net/http"
	"slices"
	"time"
)

// JWTAuthnFilterName is Envoy's JWT authentication filter; its name is
// also the dynamic metadata namespace it writes payloads under.
const JWTAuthnFilterName = "envoy.filters.http.jwt_authn"

// jwtProviderFields are the JwtProvider fields the proxy implements.
var jwtProviderFields = []string{
	"issuer", "audiences", "local_jwks", "forward", "from_headers", "from_params", "from_cookies",
	"payload_in_metadata", "clock_skew_seconds", "forward_payload_header", "claim_to_headers",
	"normalize_payload_in_metadata", "clear_route_cache",
}

// BuildJWTAuthn validates a JwtAuthentication config.
func BuildJWTAuthn(a *anypb.Any) (*auth.JWTFilter, *fieldError) {
	cfg := &jwtv3.JwtAuthentication{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding JwtAuthentication: %w", err)
	}
	if err := checkFields(cfg, "providers", "rules", "bypass_cors_preflight"); err != nil {
		return nil, &fieldError{Err: err}
	}
	f := &auth.JWTFilter{BypassCORS: cfg.GetBypassCorsPreflight()}
	byName := map[string]*auth.JWTProvider{}
	names := make([]string, 0, len(cfg.GetProviders()))
	for name := range cfg.GetProviders() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, fe := buildJWTProvider(name, cfg.GetProviders()[name])
		if fe != nil {
			fe.Field = ".providers[" + name + "]" + fe.Field
			return nil, fe
		}
		byName[name] = p
		f.Providers = append(f.Providers, p)
	}
	for i, rule := range cfg.GetRules() {
		field := fmt.Sprintf(".rules[%d]", i)
		if err := checkFields(rule, "match", "requires"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		if rule.GetMatch() == nil {
			return nil, fieldErr(field+".match", "missing")
		}
		m, fe := BuildMatch(rule.GetMatch())
		if fe != nil {
			fe.Field = field + ".match" + fe.Field
			return nil, fe
		}
		jr := auth.JWTRule{Match: m}
		if req := rule.GetRequires(); req != nil {
			built, fe := buildJWTRequirement(req, byName)
			if fe != nil {
				fe.Field = field + ".requires" + fe.Field
				return nil, fe
			}
			jr.Req = &built
		}
		f.Rules = append(f.Rules, jr)
	}
	return f, nil
}

func buildJWTProvider(name string, p *jwtv3.JwtProvider) (*auth.JWTProvider, *fieldError) {
	if err := checkFields(p, jwtProviderFields...); err != nil {
		return nil, &fieldError{Err: err}
	}
	out := &auth.JWTProvider{
		Name: name, Issuer: p.GetIssuer(), Audiences: p.GetAudiences(), Forward: p.GetForward(),
		Params: p.GetFromParams(), Cookies: p.GetFromCookies(), PayloadKey: p.GetPayloadInMetadata(),
		Skew: auth.DefaultClockSkew, ForwardPayloadHeader: p.GetForwardPayloadHeader(),
	}
	if s := p.GetClockSkewSeconds(); s != 0 {
		out.Skew = time.Duration(s) * time.Second
	}
	for i, h := range p.GetFromHeaders() {
		if err := checkFields(h, "name", "value_prefix"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".from_headers[%d]", i), "%w", err)
		}
		if h.GetName() == "" {
			return nil, fieldErr(fmt.Sprintf(".from_headers[%d].name", i), "empty")
		}
		out.Headers = append(out.Headers, auth.JWTHeader{Name: http.CanonicalHeaderKey(h.GetName()), Prefix: h.GetValuePrefix()})
	}
	if len(out.Headers) == 0 && len(out.Params) == 0 && len(out.Cookies) == 0 {

		out.Headers = []auth.JWTHeader{{Name: "Authorization", Prefix: "Bearer "}}
		out.Params = []string{"access_token"}
	}
	for i, c := range p.GetClaimToHeaders() {
		if err := checkFields(c, "header_name", "claim_name"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".claim_to_headers[%d]", i), "%w", err)
		}
		out.ClaimHeaders = append(out.ClaimHeaders, auth.ClaimHeader{Header: http.CanonicalHeaderKey(c.GetHeaderName()), Claim: c.GetClaimName()})
	}
	if n := p.GetNormalizePayloadInMetadata(); n != nil {
		if err := checkFields(n, "space_delimited_claims"); err != nil {
			return nil, fieldErr(".normalize_payload_in_metadata", "%w", err)
		}
		out.SpaceDelimited = n.GetSpaceDelimitedClaims()
	}
	src := p.GetLocalJwks()
	if src == nil {
		if p.GetRemoteJwks() != nil {
			return nil, fieldErr(".remote_jwks", "the proxy does not fetch keys (the controller inlines them as local_jwks): %w", ErrUnsupported)
		}
		return nil, fieldErr(".local_jwks", "missing")
	}
	body, err := readDataSource(src)
	if err != nil {
		return nil, fieldErr(".local_jwks", "%w", err)
	}
	var set jose.JSONWebKeySet
	if json.Unmarshal(body, &set) == nil {
		for _, k := range set.Keys {
			if k.Valid() && k.IsPublic() || k.Valid() && isSymmetric(k) {
				out.Keys = append(out.Keys, k)
			}
		}
	}
	return out, nil
}

func isSymmetric(k jose.JSONWebKey) bool {
	_, ok := k.Key.([]byte)
	return ok
}

func buildJWTRequirement(r *jwtv3.JwtRequirement, providers map[string]*auth.JWTProvider) (auth.JWTRequirement, *fieldError) {
	var out auth.JWTRequirement
	switch t := r.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		p, ok := providers[t.ProviderName]
		if !ok {
			return out, fieldErr(".provider_name", "unknown provider %q", t.ProviderName)
		}
		out.Kind, out.Provider = auth.ReqProvider, p
	case *jwtv3.JwtRequirement_RequiresAny:
		children, fe := buildJWTRequirementList(".requires_any.requirements", t.RequiresAny.GetRequirements(), providers)
		if fe != nil {
			return out, fe
		}
		out.Kind, out.Children = auth.ReqAny, children
	case *jwtv3.JwtRequirement_RequiresAll:
		children, fe := buildJWTRequirementList(".requires_all.requirements", t.RequiresAll.GetRequirements(), providers)
		if fe != nil {
			return out, fe
		}
		out.Kind, out.Children = auth.ReqAll, children
	case *jwtv3.JwtRequirement_AllowMissing:
		out.Kind = auth.ReqAllowMissing
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		out.Kind = auth.ReqAllowMissingOrFailed
	case nil:
		return out, fieldErr("", "missing requirement")
	default:
		return out, fieldErr("", "requirement %T: %w", t, ErrUnsupported)
	}
	return out, nil
}

// buildJWTRequirementList builds the requirements of a requires_any or
// requires_all, which Envoy's validation wants at least two of.
func buildJWTRequirementList(field string, list []*jwtv3.JwtRequirement, providers map[string]*auth.JWTProvider) ([]auth.JWTRequirement, *fieldError) {
	var out []auth.JWTRequirement
	for i, c := range list {
		child, fe := buildJWTRequirement(c, providers)
		if fe != nil {
			fe.Field = fmt.Sprintf("%s[%d]%s", field, i, fe.Field)
			return nil, fe
		}
		out = append(out, child)
	}
	if len(out) < 2 {
		return nil, fieldErr(field, "want at least 2, got %d", len(out))
	}
	return out, nil
}

package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"
)

// jwtAuthnFilterName is Envoy's JWT authentication filter; its name is
// also the dynamic metadata namespace it writes payloads under.
const jwtAuthnFilterName = "envoy.filters.http.jwt_authn"

// defaultClockSkew is Envoy's default clock_skew_seconds.
const defaultClockSkew = 60 * time.Second

// jwtFilter is a built envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication.
type jwtFilter struct {
	providers []*jwtProvider // sorted by name
	rules     []jwtRule
	// bypassCORS is bypass_cors_preflight: CORS preflight requests are
	// not checked.
	bypassCORS bool
}

// jwtRule is one RequirementRule: the first rule whose match matches a
// request decides its requirement; req nil means nothing is required.
type jwtRule struct {
	match routeMatch
	req   *jwtRequirement
}

type jwtReqKind int

const (
	reqProvider jwtReqKind = iota
	reqAny
	reqAll
	reqAllowMissing
	reqAllowMissingOrFailed
)

// jwtRequirement is a built JwtRequirement tree.
type jwtRequirement struct {
	kind     jwtReqKind
	provider *jwtProvider
	children []jwtRequirement
}

// jwtProvider is one JwtProvider: where its tokens are, what it accepts
// and where it puts the payload.
type jwtProvider struct {
	name      string
	issuer    string   // "" accepts any iss
	audiences []string // empty accepts any aud
	// keys are the local_jwks keys; empty when the JWKS did not parse (every
	// token then fails, as Envoy does with an invalid inline JWKS).
	keys       []jose.JSONWebKey
	forward    bool
	headers    []jwtHeader
	params     []string
	cookies    []string
	payloadKey string // payload_in_metadata; "" writes none
	skew       time.Duration
	// forwardPayloadHeader receives the base64url payload of a verified
	// token; claimHeaders copy claims into headers.
	forwardPayloadHeader string
	claimHeaders         []claimHeader
	spaceDelimited       []string
}

// jwtHeader is a JwtHeader location: the token follows prefix.
type jwtHeader struct {
	name   string // canonical header name
	prefix string
}

type claimHeader struct {
	header string
	claim  string
}

// jwtProviderFields are the JwtProvider fields the proxy implements.
var jwtProviderFields = []string{
	"issuer", "audiences", "local_jwks", "forward", "from_headers", "from_params", "from_cookies",
	"payload_in_metadata", "clock_skew_seconds", "forward_payload_header", "claim_to_headers",
	"normalize_payload_in_metadata", "clear_route_cache",
}

// buildJWTAuthn validates a JwtAuthentication config.
func buildJWTAuthn(a *anypb.Any) (*jwtFilter, *fieldError) {
	cfg := &jwtv3.JwtAuthentication{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding JwtAuthentication: %w", err)
	}
	if err := checkFields(cfg, "providers", "rules", "bypass_cors_preflight"); err != nil {
		return nil, &fieldError{err: err}
	}
	f := &jwtFilter{bypassCORS: cfg.GetBypassCorsPreflight()}
	byName := map[string]*jwtProvider{}
	names := make([]string, 0, len(cfg.GetProviders()))
	for name := range cfg.GetProviders() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, fe := buildJWTProvider(name, cfg.GetProviders()[name])
		if fe != nil {
			fe.field = ".providers[" + name + "]" + fe.field
			return nil, fe
		}
		byName[name] = p
		f.providers = append(f.providers, p)
	}
	for i, rule := range cfg.GetRules() {
		field := fmt.Sprintf(".rules[%d]", i)
		if err := checkFields(rule, "match", "requires"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		if rule.GetMatch() == nil {
			return nil, fieldErr(field+".match", "missing")
		}
		m, fe := buildMatch(rule.GetMatch())
		if fe != nil {
			fe.field = field + ".match" + fe.field
			return nil, fe
		}
		jr := jwtRule{match: m}
		if req := rule.GetRequires(); req != nil {
			built, fe := buildJWTRequirement(req, byName)
			if fe != nil {
				fe.field = field + ".requires" + fe.field
				return nil, fe
			}
			jr.req = &built
		}
		f.rules = append(f.rules, jr)
	}
	return f, nil
}

func buildJWTProvider(name string, p *jwtv3.JwtProvider) (*jwtProvider, *fieldError) {
	if err := checkFields(p, jwtProviderFields...); err != nil {
		return nil, &fieldError{err: err}
	}
	out := &jwtProvider{
		name: name, issuer: p.GetIssuer(), audiences: p.GetAudiences(), forward: p.GetForward(),
		params: p.GetFromParams(), cookies: p.GetFromCookies(), payloadKey: p.GetPayloadInMetadata(),
		skew: defaultClockSkew, forwardPayloadHeader: p.GetForwardPayloadHeader(),
	}
	if s := p.GetClockSkewSeconds(); s != 0 {
		out.skew = time.Duration(s) * time.Second
	}
	for i, h := range p.GetFromHeaders() {
		if err := checkFields(h, "name", "value_prefix"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".from_headers[%d]", i), "%w", err)
		}
		if h.GetName() == "" {
			return nil, fieldErr(fmt.Sprintf(".from_headers[%d].name", i), "empty")
		}
		out.headers = append(out.headers, jwtHeader{name: http.CanonicalHeaderKey(h.GetName()), prefix: h.GetValuePrefix()})
	}
	if len(out.headers) == 0 && len(out.params) == 0 && len(out.cookies) == 0 {
		// Envoy's default locations.
		out.headers = []jwtHeader{{name: "Authorization", prefix: "Bearer "}}
		out.params = []string{"access_token"}
	}
	for i, c := range p.GetClaimToHeaders() {
		if err := checkFields(c, "header_name", "claim_name"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".claim_to_headers[%d]", i), "%w", err)
		}
		out.claimHeaders = append(out.claimHeaders, claimHeader{header: http.CanonicalHeaderKey(c.GetHeaderName()), claim: c.GetClaimName()})
	}
	if n := p.GetNormalizePayloadInMetadata(); n != nil {
		if err := checkFields(n, "space_delimited_claims"); err != nil {
			return nil, fieldErr(".normalize_payload_in_metadata", "%w", err)
		}
		out.spaceDelimited = n.GetSpaceDelimitedClaims()
	}
	src := p.GetLocalJwks()
	if src == nil {
		if p.GetRemoteJwks() != nil {
			return nil, fieldErr(".remote_jwks", "the proxy does not fetch keys (the controller inlines them as local_jwks): %w", errUnsupported)
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
				out.keys = append(out.keys, k)
			}
		}
	}
	return out, nil
}

func isSymmetric(k jose.JSONWebKey) bool {
	_, ok := k.Key.([]byte)
	return ok
}

func buildJWTRequirement(r *jwtv3.JwtRequirement, providers map[string]*jwtProvider) (jwtRequirement, *fieldError) {
	var out jwtRequirement
	switch t := r.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		p, ok := providers[t.ProviderName]
		if !ok {
			return out, fieldErr(".provider_name", "unknown provider %q", t.ProviderName)
		}
		out.kind, out.provider = reqProvider, p
	case *jwtv3.JwtRequirement_RequiresAny:
		children, fe := buildJWTRequirementList(".requires_any.requirements", t.RequiresAny.GetRequirements(), providers)
		if fe != nil {
			return out, fe
		}
		out.kind, out.children = reqAny, children
	case *jwtv3.JwtRequirement_RequiresAll:
		children, fe := buildJWTRequirementList(".requires_all.requirements", t.RequiresAll.GetRequirements(), providers)
		if fe != nil {
			return out, fe
		}
		out.kind, out.children = reqAll, children
	case *jwtv3.JwtRequirement_AllowMissing:
		out.kind = reqAllowMissing
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		out.kind = reqAllowMissingOrFailed
	case nil:
		return out, fieldErr("", "missing requirement")
	default:
		return out, fieldErr("", "requirement %T: %w", t, errUnsupported)
	}
	return out, nil
}

// buildJWTRequirementList builds the requirements of a requires_any or
// requires_all, which Envoy's validation wants at least two of.
func buildJWTRequirementList(field string, list []*jwtv3.JwtRequirement, providers map[string]*jwtProvider) ([]jwtRequirement, *fieldError) {
	var out []jwtRequirement
	for i, c := range list {
		child, fe := buildJWTRequirement(c, providers)
		if fe != nil {
			fe.field = fmt.Sprintf("%s[%d]%s", field, i, fe.field)
			return nil, fe
		}
		out = append(out, child)
	}
	if len(out) < 2 {
		return nil, fieldErr(field, "want at least 2, got %d", len(out))
	}
	return out, nil
}

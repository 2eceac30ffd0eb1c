package auth

import (
	"time"

	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/go-jose/go-jose/v4"
)

// DefaultClockSkew is Envoy's default clock_skew_seconds.
const DefaultClockSkew = 60 * time.Second

// JWTFilter is a built envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication.
type JWTFilter struct {
	Providers []*JWTProvider // sorted by name
	// Rules are the requirement rules, in order.
	Rules []JWTRule
	// BypassCORS is bypass_cors_preflight: CORS preflight requests are
	// not checked.
	BypassCORS bool
}

// JWTRule is one RequirementRule: the first rule whose match matches a
// request decides its requirement; req nil means nothing is required.
type JWTRule struct {
	Match routing.RouteMatch
	Req   *JWTRequirement
}

// JWTRequirementKind is the form of a JwtRequirement.
type JWTRequirementKind int

const (
	// The JwtRequirement forms: provider_name, requires_any, requires_all,
	// allow_missing and allow_missing_or_failed.
	ReqProvider JWTRequirementKind = iota
	ReqAny
	ReqAll
	ReqAllowMissing
	ReqAllowMissingOrFailed
)

// JWTRequirement is a built JwtRequirement tree.
type JWTRequirement struct {
	// Kind selects Provider (ReqProvider) or Children (ReqAny, ReqAll).
	Kind     JWTRequirementKind
	Provider *JWTProvider
	Children []JWTRequirement
}

// JWTProvider is one JwtProvider: where its tokens are, what it accepts
// and where it puts the payload.
type JWTProvider struct {
	// Name is the provider's key in the filter's providers map.
	Name      string
	Issuer    string   // "" accepts any iss
	Audiences []string // empty accepts any aud
	// Keys are the local_jwks keys; empty when the JWKS did not parse (every
	// token then fails, as Envoy does with an invalid inline JWKS).
	Keys []jose.JSONWebKey
	// Forward keeps the token in the request (forward); else it is removed.
	Forward bool
	// Headers, Params and Cookies are where tokens are looked for:
	// from_headers, from_params, from_cookies. All empty means Envoy's
	// defaults (Authorization: Bearer and the access_token parameter).
	Headers    []JWTHeader
	Params     []string
	Cookies    []string
	PayloadKey string // payload_in_metadata; "" writes none
	// Skew is clock_skew_seconds (DefaultClockSkew when unset).
	Skew time.Duration
	// ForwardPayloadHeader receives the base64url payload of a verified
	// token; claimHeaders copy claims into headers.
	ForwardPayloadHeader string
	ClaimHeaders         []ClaimHeader
	// SpaceDelimited are claims whose string value is split on spaces
	// (normalize_payload_in_metadata.space_delimited_claims).
	SpaceDelimited []string
}

// JWTHeader is a JwtHeader location: the token follows prefix.
type JWTHeader struct {
	Name string // canonical header name
	// Prefix is value_prefix ("Bearer "); the token follows it.
	Prefix string
}

// ClaimHeader is one claim_to_headers entry: the claim's value is copied
// into the header.
type ClaimHeader struct {
	Header string
	Claim  string
}

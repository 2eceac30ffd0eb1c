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
	Rules     []JWTRule
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

type JWTRequirementKind int

const (
	ReqProvider JWTRequirementKind = iota
	ReqAny
	ReqAll
	ReqAllowMissing
	ReqAllowMissingOrFailed
)

// JWTRequirement is a built JwtRequirement tree.
type JWTRequirement struct {
	Kind     JWTRequirementKind
	Provider *JWTProvider
	Children []JWTRequirement
}

// JWTProvider is one JwtProvider: where its tokens are, what it accepts
// and where it puts the payload.
type JWTProvider struct {
	Name      string
	Issuer    string   // "" accepts any iss
	Audiences []string // empty accepts any aud
	// Keys are the local_jwks keys; empty when the JWKS did not parse (every
	// token then fails, as Envoy does with an invalid inline JWKS).
	Keys       []jose.JSONWebKey
	Forward    bool
	Headers    []JWTHeader
	Params     []string
	Cookies    []string
	PayloadKey string // payload_in_metadata; "" writes none
	Skew       time.Duration
	// ForwardPayloadHeader receives the base64url payload of a verified
	// token; claimHeaders copy claims into headers.
	ForwardPayloadHeader string
	ClaimHeaders         []ClaimHeader
	SpaceDelimited       []string
}

// JWTHeader is a JwtHeader location: the token follows prefix.
type JWTHeader struct {
	Name   string // canonical header name
	Prefix string
}

type ClaimHeader struct {
	Header string
	Claim  string
}

package compiler

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"
)

// CodeJWKSUnavailable: a RequestAuthentication jwksUri whose keys are not
// available: the controller's fetch failed (a warning; tokens of that
// issuer are rejected, as Istio does) or, in `gitmesh validate`, was not
// attempted (info).
const CodeJWKSUnavailable = "GM0240"

// jwtAuthnFilterName is Envoy's JWT authentication HTTP filter; its name
// is also the dynamic metadata namespace of verified payloads.
const jwtAuthnFilterName = "envoy.filters.http.jwt_authn"

// rejectAllJWKS is the JWKS inlined for an issuer whose keys could not be
// fetched (Istio's PublicOnlyJwks): a P-256 public key whose private key
// was discarded when it was generated, so no token verifies.
const rejectAllJWKS = `{"keys":[{"kty":"EC","kid":"gitmesh-unavailable","alg":"ES256","use":"sig","crv":"P-256",` +
	`"x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`

// securityOptions are Parse's inputs for the security kinds.
type securityOptions struct {
	jwks      map[string][]byte
	jwksFails map[string]error
}

// WithJWKS gives Parse the JWKS documents the controller fetched for
// RequestAuthentication jwksUri values, by URI. The compiler does no I/O:
// a jwksUri missing from keys compiles to a JWKS that rejects every token.
func WithJWKS(keys map[string][]byte) Option {
	return func(o *options) { o.security.jwks = keys }
}

// WithJWKSErrors gives Parse the jwksUri fetches that failed, by URI; each
// is reported (CodeJWKSUnavailable, warning) where it is used.
func WithJWKSErrors(errs map[string]error) Option {
	return func(o *options) { o.security.jwksFails = errs }
}

// openIDDiscoveryPath is where an issuer publishes its OpenID provider
// metadata (whose jwks_uri names its keys).
const openIDDiscoveryPath = "/.well-known/openid-configuration"

// JWKSURIs returns what the controller fetches before Parse, sorted and
// without duplicates: the jwksUri of every valid RequestAuthentication
// rule without inline jwks, and for a rule with neither, the OpenID
// discovery URL of its issuer (<issuer>/.well-known/openid-configuration),
// which the fetcher follows to the issuer's jwks_uri, as istiod does.
func (p *Policy) JWKSURIs() []string {
	var out []string
	for _, ra := range p.RequestAuthentications {
		if !ra.valid {
			continue
		}
		for _, rule := range ra.Spec.GetJwtRules() {
			if key := jwksKey(rule); key != "" {
				out = append(out, key)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// jwksKey is the URL a rule's keys are fetched from: its jwksUri, or
// without one (and without inline jwks) its issuer's OpenID discovery URL;
// "" when the keys are inline or the issuer is not an http(s) URL.
func jwksKey(rule *security.JWTRule) string {
	switch {
	case rule.GetJwks() != "":
		return ""
	case rule.GetJwksUri() != "":
		return rule.GetJwksUri()
	}
	u, err := url.Parse(rule.GetIssuer())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return strings.TrimSuffix(rule.GetIssuer(), "/") + openIDDiscoveryPath
}

// linkAuthz orders the security kinds and resolves jwksUri keys from opts,
// reporting those that are not available.
func (p *Policy) linkAuthz(opts securityOptions, diags *Diagnostics) {
	p.sortAuthz()
	p.jwks = map[string]string{}
	for _, ra := range p.RequestAuthentications {
		if !ra.valid {
			continue
		}
		r := newReporter(&ra.Meta, KindRequestAuthentication, diags)
		for i, rule := range ra.Spec.GetJwtRules() {
			uri := jwksKey(rule)
			if uri == "" {
				continue
			}
			path := fmt.Sprintf("spec.jwtRules[%d].jwksUri", i)
			if rule.GetJwksUri() == "" {
				path = fmt.Sprintf("spec.jwtRules[%d].issuer", i)
			}
			body, fetched := opts.jwks[uri]
			err, failed := opts.jwksFails[uri]
			switch {
			case fetched:
				if perr := parseJWKS(string(body)); perr != nil {
					r.warnf(CodeJWKSUnavailable, path, "%s answered a document that is not a JWKS (%v); tokens issued by %q are rejected", uri, perr, rule.GetIssuer())
					continue
				}
				p.jwks[uri] = string(body)
			case failed:
				r.warnf(CodeJWKSUnavailable, path, "fetching the keys (%s): %v; tokens issued by %q are rejected until a fetch succeeds (Istio's behaviour)", uri, err, rule.GetIssuer())
			default:
				r.report(CodeJWKSUnavailable, SeverityInfo, path, "keys at %s are fetched by the controller; not fetched here", uri)
			}
		}
	}
}

func parseJWKS(s string) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(s), &set); err != nil {
		return err
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("no keys")
	}
	return nil
}

// checkRequestAuthentication is Istio's ValidateRequestAuthentication.
func checkRequestAuthentication(r *reporter, ra *RequestAuthentication) {
	checkSelector(r, ra.Spec.GetSelector().GetMatchLabels())
	for i, rule := range ra.Spec.GetJwtRules() {
		base := fmt.Sprintf("spec.jwtRules[%d]", i)
		if rule == nil {
			r.errorf(CodeInvalidValue, base, "`jwtRules` entry must not be null")
			continue
		}
		if rule.GetIssuer() == "" && rule.GetJwksUri() == "" {
			r.errorf(CodeMissingField, base+".issuer", "issuer or jwksUri must be set")
		}
		for j, aud := range rule.GetAudiences() {
			if aud == "" {
				r.errorf(CodeInvalidValue, fmt.Sprintf("%s.audiences[%d]", base, j), "audience must be non-empty")
			}
		}
		if uri := rule.GetJwksUri(); uri != "" {
			u, err := url.Parse(uri)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				r.errorf(CodeInvalidValue, base+".jwksUri", "jwksUri %q must be an http or https URL", uri)
			}
		}
		if jwks := rule.GetJwks(); jwks != "" {
			if err := parseJWKS(jwks); err != nil {
				r.errorf(CodeInvalidValue, base+".jwks", "jwks is not a valid JWKS: %v", err)
			}
			if rule.GetJwksUri() != "" {
				r.warnf(CodeConflictingFields, base+".jwksUri", "jwks and jwksUri are both set; jwks is used, as in Istio")
			}
		}
		if rule.GetJwks() == "" && rule.GetJwksUri() == "" && jwksKey(rule) == "" && rule.GetIssuer() != "" {
			r.warnf(CodeInvalidValue, base+".issuer", "neither jwks nor jwksUri is set and issuer %q is not an http(s) URL to discover keys from; tokens of this issuer are rejected", rule.GetIssuer())
		}
		for j, h := range rule.GetFromHeaders() {
			if h.GetName() == "" {
				r.errorf(CodeMissingField, fmt.Sprintf("%s.fromHeaders[%d].name", base, j), "location header name must be set")
			}
		}
		for j, p := range rule.GetFromParams() {
			if p == "" {
				r.errorf(CodeInvalidValue, fmt.Sprintf("%s.fromParams[%d]", base, j), "location query must be set")
			}
		}
		for j, c := range rule.GetFromCookies() {
			if c == "" {
				r.errorf(CodeInvalidValue, fmt.Sprintf("%s.fromCookies[%d]", base, j), "cookie name must be set")
			}
		}
		for j, c := range rule.GetOutputClaimToHeaders() {
			path := fmt.Sprintf("%s.outputClaimToHeaders[%d]", base, j)
			if c.GetHeader() == "" || strings.ContainsAny(c.GetHeader(), " :") {
				r.errorf(CodeInvalidValue, path+".header", "invalid header name %q", c.GetHeader())
			}
			if c.GetClaim() == "" {
				r.errorf(CodeMissingField, path+".claim", "claim must be set")
			}
		}
	}
}

// jwtFilter returns the jwt_authn config of the RequestAuthentications
// applying to a workload (nil when none), as Istio's
// convertToEnvoyJwtConfig: rules of every applicable policy sorted by
// issuer, one provider origins-<i> each, payload_in_metadata "payload";
// one provider requires {provider or allow_missing}, several require any
// provider or all of {provider or allow_missing}: a request without a token
// passes (unauthenticated), a request with an invalid one is rejected.
func (p *Policy) jwtFilter(ns string, labels map[string]string, clearRouteCache bool) *jwtv3.JwtAuthentication {
	var rules []*security.JWTRule
	for _, ra := range p.RequestAuthentications {
		if ra.valid && p.appliesTo(ra.Namespace, ra.Spec.GetSelector().GetMatchLabels(), ns, labels) {
			rules = append(rules, ra.Spec.GetJwtRules()...)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	slices.SortStableFunc(rules, func(a, b *security.JWTRule) int { return cmp.Compare(a.GetIssuer(), b.GetIssuer()) })
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var inner, outer []*jwtv3.JwtRequirement
	for i, rule := range rules {
		jwks := rule.GetJwks()
		if jwks == "" {
			jwks = p.jwks[jwksKey(rule)]
		}
		if jwks == "" {
			jwks = rejectAllJWKS
		}
		prov := &jwtv3.JwtProvider{
			Issuer:               rule.GetIssuer(),
			Audiences:            rule.GetAudiences(),
			Forward:              rule.GetForwardOriginalToken(),
			ForwardPayloadHeader: rule.GetOutputPayloadToHeader(),
			PayloadInMetadata:    jwtPayloadKey,
			NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{
				SpaceDelimitedClaims: spaceDelimitedClaims(rule.GetSpaceDelimitedClaims()),
			},
			ClearRouteCache: clearRouteCache,
			FromParams:      rule.GetFromParams(),
			FromCookies:     rule.GetFromCookies(),
			JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: jwks},
			}},
		}
		for _, c := range rule.GetOutputClaimToHeaders() {
			prov.ClaimToHeaders = append(prov.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
		}
		for _, h := range rule.GetFromHeaders() {
			prov.FromHeaders = append(prov.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
		}
		name := fmt.Sprintf("origins-%d", i)
		cfg.Providers[name] = prov
		providerReq := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
		inner = append(inner, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: []*jwtv3.JwtRequirement{
				providerReq,
				{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
			},
		}}})
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	req := inner[0]
	if len(inner) > 1 {
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}})
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: outer}}}
	}
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
	}}
	return cfg
}

// spaceDelimitedClaims is Istio's buildSpaceDelimitedClaims: "permission"
// and "scope" always, plus the rule's, sorted.
func spaceDelimitedClaims(extra []string) []string {
	out := append([]string{"permission", "scope"}, extra...)
	slices.Sort(out)
	return slices.Compact(out)
}

// headerJWTClaim is the VirtualService header name prefix that matches a
// JWT claim instead of a header.
const headerJWTClaim = "@request.auth.claims"

// routingClaim parses a claim-routing header name as Istio's
// ToRoutingClaim: "@request.auth.claims.a.b" or "@request.auth.claims[a][b]"
// name the (nested) claim a.b.
func routingClaim(name string) ([]string, bool) {
	if !strings.HasPrefix(strings.ToLower(name), headerJWTClaim) {
		return nil, false
	}
	rest := name[len(headerJWTClaim):]
	switch {
	case strings.HasPrefix(rest, ".") && len(rest) > 1:
		return strings.Split(rest[1:], "."), true
	case strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && len(rest) > 2:
		return strings.Split(rest[1:len(rest)-1], "]["), true
	}
	return nil, false
}

// claimRouteMatch is Istio's translateMetadataMatch: a header match on a
// JWT claim becomes a RouteMatch dynamic_metadata matcher on the verified
// payload (the claim as a list containing the value, or equal to it); nil
// for other headers.
func claimRouteMatch(name string, in *networking.StringMatch) *matcherv3.MetadataMatcher {
	claims, ok := routingClaim(name)
	if !ok {
		return nil
	}
	value := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
	if !presentMatch(in) {
		value = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatcher(in)}}
	}
	return jwtClaimMatcher(claims, value)
}

package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWTStatus is the outcome of verifying a token, with Envoy's messages
// (jwt_verify_lib's status strings), which its 401 replies carry.
type JWTStatus int

const (
	// The verification outcomes a request can see in a 401 reply.
	JWTOK JWTStatus = iota
	jwtMissing
	JWTBadFormat
	JWTExpired
	JWTNotYetValid
	JWTUnknownIssuer
	JWTAudienceNotAllowed
	jwtKidAlgMismatch
	jwtNoValidKeys
	JWTVerificationFail
)

var jwtStatusText = [...]string{
	JWTOK:                 "OK",
	jwtMissing:            "Jwt is missing",
	JWTBadFormat:          "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	JWTExpired:            "Jwt is expired",
	JWTNotYetValid:        "Jwt not yet valid",
	JWTUnknownIssuer:      "Jwt issuer is not configured",
	JWTAudienceNotAllowed: "Audiences in Jwt are not allowed",
	jwtKidAlgMismatch:     "Jwks doesn't have key to match kid or alg from Jwt",
	jwtNoValidKeys:        "Jwks doesn't have any valid public key",
	JWTVerificationFail:   "Jwt verification fails",
}

// String returns Envoy's message for the status.
func (s JWTStatus) String() string { return jwtStatusText[s] }

// jwtAlgorithms are the JWS algorithms Envoy's jwt_authn verifies.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512,
}

// jwtToken is a token found in a request and where.
type jwtToken struct {
	value  string
	header string // the header it came from; "" for a parameter or cookie
}

// jwtRun is one request's pass through the filter: provider results are
// computed once and shared by the requirement tree.
type jwtRun struct {
	f       *JWTFilter
	r       *http.Request
	now     time.Time
	results map[*JWTProvider]jwtResult
	// payloads are the verified payloads by payload_in_metadata key.
	payloads map[string]any
}

type jwtResult struct {
	status JWTStatus
	claims map[string]any
	raw    []byte // decoded payload
	token  jwtToken
}

// Run applies the filter to r. It returns the dynamic metadata to add
// (nil for none) and jwtOK, or the status the request fails with.
func (f *JWTFilter) Run(r *http.Request, now time.Time) (map[string]any, JWTStatus) {
	if f.BypassCORS && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return nil, JWTOK
	}
	var req *JWTRequirement
	matched := false
	path := r.URL.EscapedPath()
	for i := range f.Rules {
		if f.Rules[i].Match.Matches(r, path) {
			req, matched = f.Rules[i].Req, true
			break
		}
	}
	if !matched || req == nil {
		return nil, JWTOK
	}
	run := &jwtRun{f: f, r: r, now: now, results: map[*JWTProvider]jwtResult{}, payloads: map[string]any{}}
	st := run.eval(req)
	if st != JWTOK {
		return nil, st
	}
	for p, res := range run.results {
		if res.status == JWTOK {
			run.Apply(p, res)
		}
	}
	if len(run.payloads) == 0 {
		return nil, JWTOK
	}
	return run.payloads, JWTOK
}

// eval evaluates a requirement as Envoy's verifiers: requires_any passes
// when a child passes, else fails with the first failure that is not a
// missing token; requires_all fails with its first failing child.
func (run *jwtRun) eval(req *JWTRequirement) JWTStatus {
	switch req.Kind {
	case ReqProvider:
		return run.verify(req.Provider).status
	case ReqAny:
		worst := jwtMissing
		for i := range req.Children {
			st := run.eval(&req.Children[i])
			if st == JWTOK {
				return JWTOK
			}
			if worst == jwtMissing {
				worst = st
			}
		}
		return worst
	case ReqAll:
		for i := range req.Children {
			if st := run.eval(&req.Children[i]); st != JWTOK {
				return st
			}
		}
		return JWTOK
	case ReqAllowMissing, ReqAllowMissingOrFailed:
		st := run.verifyAny()
		if req.Kind == ReqAllowMissingOrFailed || st == jwtMissing {
			return JWTOK
		}
		return st
	}
	return JWTVerificationFail
}

// verifyAny is allow_missing's check: every token found at any provider's
// locations must verify against the provider of its issuer.
func (run *jwtRun) verifyAny() JWTStatus {
	found := false
	for _, p := range run.f.Providers {
		res := run.verify(p)
		switch {
		case res.status == JWTOK:
			return JWTOK
		case res.status == jwtMissing:
		case res.status == JWTUnknownIssuer:
			found = true // another provider's token; judged by that provider
		default:
			return res.status
		}
	}
	if found {
		return JWTUnknownIssuer
	}
	return jwtMissing
}

// verify checks the provider's tokens in the request, once per request.
func (run *jwtRun) verify(p *JWTProvider) jwtResult {
	if res, ok := run.results[p]; ok {
		return res
	}
	res := jwtResult{status: jwtMissing}
	for _, tok := range p.extract(run.r) {
		cand := p.check(tok, run.now)
		if cand.status == JWTOK {
			res = cand
			break
		}
		if res.status == jwtMissing {
			res = cand
		}
	}
	run.results[p] = res
	return res
}

// Apply performs what a verified token causes: the payload in metadata,
// the forwarded payload and claim headers, and the token's removal when
// forward is false.
func (run *jwtRun) Apply(p *JWTProvider, res jwtResult) {
	if p.PayloadKey != "" {
		run.payloads[p.PayloadKey] = res.claims
	}
	h := run.r.Header
	if p.ForwardPayloadHeader != "" {
		h.Set(p.ForwardPayloadHeader, base64.RawURLEncoding.EncodeToString(res.raw))
	}
	for _, ch := range p.ClaimHeaders {
		switch v := res.claims[ch.Claim].(type) {
		case string:
			h.Set(ch.Header, v)
		case float64, bool:
			h.Set(ch.Header, fmt.Sprint(v))
		}
	}
	if !p.Forward && res.token.header != "" {
		h.Del(res.token.header)
	}
}

// extract returns the tokens at the provider's locations, headers first.
func (p *JWTProvider) extract(r *http.Request) []jwtToken {
	var out []jwtToken
	for _, loc := range p.Headers {
		for _, v := range r.Header.Values(loc.Name) {
			if loc.Prefix != "" {
				i := strings.Index(v, loc.Prefix)
				if i < 0 {
					continue
				}
				v = v[i+len(loc.Prefix):]
				if j := strings.IndexAny(v, ", "); j >= 0 {
					v = v[:j]
				}
			}
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, jwtToken{value: v, header: loc.Name})
			}
		}
	}
	if len(p.Params) > 0 {
		q := r.URL.Query()
		for _, name := range p.Params {
			if v := q.Get(name); v != "" {
				out = append(out, jwtToken{value: v})
			}
		}
	}
	for _, name := range p.Cookies {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			out = append(out, jwtToken{value: c.Value})
		}
	}
	return out
}

// check verifies one token in Envoy's order: format, issuer, time
// constraints, audiences, then the signature against the JWKS.
func (p *JWTProvider) check(tok jwtToken, now time.Time) jwtResult {
	res := jwtResult{token: tok}
	if strings.Count(tok.value, ".") != 2 {
		res.status = JWTBadFormat
		return res
	}
	jws, err := jose.ParseSigned(tok.value, jwtAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		res.status = JWTBadFormat
		return res
	}
	raw := jws.UnsafePayloadWithoutVerification()
	dec := json.NewDecoder(bytes.NewReader(raw))
	var claims map[string]any
	if dec.Decode(&claims) != nil || claims == nil {
		res.status = JWTBadFormat
		return res
	}
	if iss, _ := claims["iss"].(string); p.Issuer != "" && iss != p.Issuer {
		res.status = JWTUnknownIssuer
		return res
	}
	if exp, ok := claims["exp"].(float64); ok && now.After(unixTime(exp).Add(p.Skew)) {
		res.status = JWTExpired
		return res
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(p.Skew).Before(unixTime(nbf)) {
		res.status = JWTNotYetValid
		return res
	}
	if len(p.Audiences) > 0 && !audienceAllowed(claims["aud"], p.Audiences) {
		res.status = JWTAudienceNotAllowed
		return res
	}
	if len(p.Keys) == 0 {
		res.status = jwtNoValidKeys
		return res
	}
	hdr := jws.Signatures[0].Header
	tried := false
	for i := range p.Keys {
		k := &p.Keys[i]
		if hdr.KeyID != "" && k.KeyID != hdr.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		tried = true
		if _, err := jws.Verify(k); err == nil {
			for _, name := range p.SpaceDelimited {
				if s, ok := claims[name].(string); ok {
					var list []any
					for _, f := range strings.Fields(s) {
						list = append(list, f)
					}
					claims[name] = list
				}
			}
			res.status, res.claims, res.raw = JWTOK, claims, raw
			return res
		}
	}
	if !tried {
		res.status = jwtKidAlgMismatch
		return res
	}
	res.status = JWTVerificationFail
	return res
}

func unixTime(f float64) time.Time {
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// audienceAllowed compares as jwt_verify_lib does: scheme and a trailing
// slash are ignored.
func audienceAllowed(aud any, allowed []string) bool {
	var got []string
	switch v := aud.(type) {
	case string:
		got = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				got = append(got, s)
			}
		}
	}
	for _, g := range got {
		for _, a := range allowed {
			if normalizeAudience(g) == normalizeAudience(a) {
				return true
			}
		}
	}
	return false
}

func normalizeAudience(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "http://"), "https://")
	return strings.TrimSuffix(s, "/")
}

// JWTReply answers a request that failed verification as Envoy does: 401
// with the status text and a WWW-Authenticate challenge.
func JWTReply(w http.ResponseWriter, r *http.Request, st JWTStatus) {
	realm := "http://" + r.Host + r.URL.EscapedPath()
	challenge := `Bearer realm="` + realm + `"`
	if st != jwtMissing {
		challenge += `, error="invalid_token"`
	}
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(st.String()))
}

package proxy

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

// jwtStatus is the outcome of verifying a token, with Envoy's messages
// (jwt_verify_lib's status strings), which its 401 replies carry.
type jwtStatus int

const (
	jwtOK jwtStatus = iota
	jwtMissing
	jwtBadFormat
	jwtExpired
	jwtNotYetValid
	jwtUnknownIssuer
	jwtAudienceNotAllowed
	jwtKidAlgMismatch
	jwtNoValidKeys
	jwtVerificationFail
)

var jwtStatusText = [...]string{
	jwtOK:                 "OK",
	jwtMissing:            "Jwt is missing",
	jwtBadFormat:          "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	jwtExpired:            "Jwt is expired",
	jwtNotYetValid:        "Jwt not yet valid",
	jwtUnknownIssuer:      "Jwt issuer is not configured",
	jwtAudienceNotAllowed: "Audiences in Jwt are not allowed",
	jwtKidAlgMismatch:     "Jwks doesn't have key to match kid or alg from Jwt",
	jwtNoValidKeys:        "Jwks doesn't have any valid public key",
	jwtVerificationFail:   "Jwt verification fails",
}

func (s jwtStatus) String() string { return jwtStatusText[s] }

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
	f       *jwtFilter
	r       *http.Request
	now     time.Time
	results map[*jwtProvider]jwtResult
	// payloads are the verified payloads by payload_in_metadata key.
	payloads map[string]any
}

type jwtResult struct {
	status jwtStatus
	claims map[string]any
	raw    []byte // decoded payload
	token  jwtToken
}

// run applies the filter to r. It returns the dynamic metadata to add
// (nil for none) and jwtOK, or the status the request fails with.
func (f *jwtFilter) run(r *http.Request, now time.Time) (map[string]any, jwtStatus) {
	if f.bypassCORS && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return nil, jwtOK
	}
	var req *jwtRequirement
	matched := false
	path := r.URL.EscapedPath()
	for i := range f.rules {
		if f.rules[i].match.matches(r, path) {
			req, matched = f.rules[i].req, true
			break
		}
	}
	if !matched || req == nil {
		return nil, jwtOK
	}
	run := &jwtRun{f: f, r: r, now: now, results: map[*jwtProvider]jwtResult{}, payloads: map[string]any{}}
	st := run.eval(req)
	if st != jwtOK {
		return nil, st
	}
	for p, res := range run.results {
		if res.status == jwtOK {
			run.apply(p, res)
		}
	}
	if len(run.payloads) == 0 {
		return nil, jwtOK
	}
	return run.payloads, jwtOK
}

// eval evaluates a requirement as Envoy's verifiers: requires_any passes
// when a child passes, else fails with the first failure that is not a
// missing token; requires_all fails with its first failing child.
func (run *jwtRun) eval(req *jwtRequirement) jwtStatus {
	switch req.kind {
	case reqProvider:
		return run.verify(req.provider).status
	case reqAny:
		worst := jwtMissing
		for i := range req.children {
			st := run.eval(&req.children[i])
			if st == jwtOK {
				return jwtOK
			}
			if worst == jwtMissing {
				worst = st
			}
		}
		return worst
	case reqAll:
		for i := range req.children {
			if st := run.eval(&req.children[i]); st != jwtOK {
				return st
			}
		}
		return jwtOK
	case reqAllowMissing, reqAllowMissingOrFailed:
		st := run.verifyAny()
		if req.kind == reqAllowMissingOrFailed || st == jwtMissing {
			return jwtOK
		}
		return st
	}
	return jwtVerificationFail
}

// verifyAny is allow_missing's check: every token found at any provider's
// locations must verify against the provider of its issuer.
func (run *jwtRun) verifyAny() jwtStatus {
	found := false
	for _, p := range run.f.providers {
		res := run.verify(p)
		switch {
		case res.status == jwtOK:
			return jwtOK
		case res.status == jwtMissing:
		case res.status == jwtUnknownIssuer:
			found = true // another provider's token; judged by that provider
		default:
			return res.status
		}
	}
	if found {
		return jwtUnknownIssuer
	}
	return jwtMissing
}

// verify checks the provider's tokens in the request, once per request.
func (run *jwtRun) verify(p *jwtProvider) jwtResult {
	if res, ok := run.results[p]; ok {
		return res
	}
	res := jwtResult{status: jwtMissing}
	for _, tok := range p.extract(run.r) {
		cand := p.check(tok, run.now)
		if cand.status == jwtOK {
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

// apply performs what a verified token causes: the payload in metadata,
// the forwarded payload and claim headers, and the token's removal when
// forward is false.
func (run *jwtRun) apply(p *jwtProvider, res jwtResult) {
	if p.payloadKey != "" {
		run.payloads[p.payloadKey] = res.claims
	}
	h := run.r.Header
	if p.forwardPayloadHeader != "" {
		h.Set(p.forwardPayloadHeader, base64.RawURLEncoding.EncodeToString(res.raw))
	}
	for _, ch := range p.claimHeaders {
		switch v := res.claims[ch.claim].(type) {
		case string:
			h.Set(ch.header, v)
		case float64, bool:
			h.Set(ch.header, fmt.Sprint(v))
		}
	}
	if !p.forward && res.token.header != "" {
		h.Del(res.token.header)
	}
}

// extract returns the tokens at the provider's locations, headers first.
func (p *jwtProvider) extract(r *http.Request) []jwtToken {
	var out []jwtToken
	for _, loc := range p.headers {
		for _, v := range r.Header.Values(loc.name) {
			if loc.prefix != "" {
				i := strings.Index(v, loc.prefix)
				if i < 0 {
					continue
				}
				v = v[i+len(loc.prefix):]
				if j := strings.IndexAny(v, ", "); j >= 0 {
					v = v[:j]
				}
			}
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, jwtToken{value: v, header: loc.name})
			}
		}
	}
	if len(p.params) > 0 {
		q := r.URL.Query()
		for _, name := range p.params {
			if v := q.Get(name); v != "" {
				out = append(out, jwtToken{value: v})
			}
		}
	}
	for _, name := range p.cookies {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			out = append(out, jwtToken{value: c.Value})
		}
	}
	return out
}

// check verifies one token in Envoy's order: format, issuer, time
// constraints, audiences, then the signature against the JWKS.
func (p *jwtProvider) check(tok jwtToken, now time.Time) jwtResult {
	res := jwtResult{token: tok}
	if strings.Count(tok.value, ".") != 2 {
		res.status = jwtBadFormat
		return res
	}
	jws, err := jose.ParseSigned(tok.value, jwtAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		res.status = jwtBadFormat
		return res
	}
	raw := jws.UnsafePayloadWithoutVerification()
	dec := json.NewDecoder(bytes.NewReader(raw))
	var claims map[string]any
	if dec.Decode(&claims) != nil || claims == nil {
		res.status = jwtBadFormat
		return res
	}
	if iss, _ := claims["iss"].(string); p.issuer != "" && iss != p.issuer {
		res.status = jwtUnknownIssuer
		return res
	}
	if exp, ok := claims["exp"].(float64); ok && now.After(unixTime(exp).Add(p.skew)) {
		res.status = jwtExpired
		return res
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(p.skew).Before(unixTime(nbf)) {
		res.status = jwtNotYetValid
		return res
	}
	if len(p.audiences) > 0 && !audienceAllowed(claims["aud"], p.audiences) {
		res.status = jwtAudienceNotAllowed
		return res
	}
	if len(p.keys) == 0 {
		res.status = jwtNoValidKeys
		return res
	}
	hdr := jws.Signatures[0].Header
	tried := false
	for i := range p.keys {
		k := &p.keys[i]
		if hdr.KeyID != "" && k.KeyID != hdr.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		tried = true
		if _, err := jws.Verify(k); err == nil {
			for _, name := range p.spaceDelimited {
				if s, ok := claims[name].(string); ok {
					var list []any
					for _, f := range strings.Fields(s) {
						list = append(list, f)
					}
					claims[name] = list
				}
			}
			res.status, res.claims, res.raw = jwtOK, claims, raw
			return res
		}
	}
	if !tried {
		res.status = jwtKidAlgMismatch
		return res
	}
	res.status = jwtVerificationFail
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

// jwtReply answers a request that failed verification as Envoy does: 401
// with the status text and a WWW-Authenticate challenge.
func jwtReply(w http.ResponseWriter, r *http.Request, st jwtStatus) {
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

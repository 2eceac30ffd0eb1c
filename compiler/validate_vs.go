package compiler

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1"
)

// This file checks one VirtualService on its own: hosts, gateway
// bindings, every http and tcp route (matches, actions, retries, faults,
// headers, CORS). Destinations are checked against the registry in
// references.go; delegates are merged in delegate.go.

// meshGateway is the reserved gateway name of sidecars.
const meshGateway = "mesh"

// maxDirectResponseBody is Envoy's default limit on a direct response
// body (max_direct_response_body_size_bytes, 4 KiB).
const maxDirectResponseBody = 4096

// checkVirtualService validates vs and returns it normalized. Hosts are
// resolved in vs's namespace; a VirtualService without hosts is a
// delegate (its routes are merged into the routes that delegate to it).
func (p *Policy) checkVirtualService(r *reporter, vs *VirtualService) *virtualService {
	spec := vs.Spec
	out := &virtualService{obj: vs, export: checkExportTo(r, "spec.exportTo", spec.GetExportTo(), vs.Namespace)}
	for i, g := range spec.GetGateways() {
		path := fmt.Sprintf("spec.gateways[%d]", i)
		if g == meshGateway {
			out.mesh = true
			continue
		}
		key := resolveGatewayName(g, vs.Namespace)
		if p.gateways[key] == nil {
			r.errorf(CodeUnknownGateway, path, "gateway %s is not defined (no Gateway %s)", g, key)
			continue
		}
		out.gateways = append(out.gateways, key)
	}
	if len(spec.GetGateways()) == 0 {
		out.mesh = true
	}
	if len(spec.GetHosts()) > 0 {
		seen := map[string]bool{}
		for i, h := range spec.GetHosts() {
			path := fmt.Sprintf("spec.hosts[%d]", i)
			fqdn, ok := checkVSHost(r, path, h, out.mesh)
			if !ok {
				continue
			}
			if seen[fqdn] {
				r.errorf(CodeDuplicateEntry, path, "host %s is listed twice", fqdn)
				continue
			}
			seen[fqdn] = true
			out.hosts = append(out.hosts, fqdn)
		}
	}
	if len(spec.GetHttp()) == 0 && len(spec.GetTcp()) == 0 && !hasField(&vs.Object, "spec.tls") {
		// (tls routes are reported unsupported while decoding: say it once)
		r.errorf(CodeMissingField, "spec.http", "at least one http or tcp route is required")
	}
	for i, h := range spec.GetHttp() {
		out.http = append(out.http, p.checkHTTPRoute(r, fmt.Sprintf("spec.http[%d]", i), h, vs.Namespace))
	}
	for i, t := range spec.GetTcp() {
		out.tcp = append(out.tcp, p.checkTCPRoute(r, fmt.Sprintf("spec.tcp[%d]", i), t, vs.Namespace))
	}
	return out
}

// checkVSHost validates a VirtualService host. "*" is accepted only when
// the VirtualService is not bound to sidecars (as Istio's validation);
// "*.example.com" everywhere: gateways match it against their server
// hosts, sidecars against the services it covers.
func checkVSHost(r *reporter, path, h string, mesh bool) (string, bool) {
	switch {
	case h == "*" && mesh:
		r.errorf(CodeInvalidHost, path, "wildcard host * is not allowed for a VirtualService bound to sidecars (mesh); name the hosts, or a wildcard such as *.example.com")
		return "", false
	case h == "*":
		return h, true
	}
	return checkHost(r, path, h)
}

// isWildcardHost reports whether h is "*" or "*.<dns name>".
func isWildcardHost(h string) bool {
	if h == "*" {
		return true
	}
	rest, ok := strings.CutPrefix(h, "*.")
	return ok && isDNSName(rest)
}

// resolveGatewayName returns the "namespace/name" key of a gateway
// reference written in namespace ns: "name" (ns/name), "ns/name",
// "./name", or the legacy "name.ns.svc.cluster.local".
func resolveGatewayName(g, ns string) string {
	if before, after, ok := strings.Cut(g, "/"); ok {
		if before == "." {
			return ns + "/" + after
		}
		return g
	}
	if name, rest, ok := strings.Cut(g, "."); ok {
		gwNS, _, _ := strings.Cut(rest, ".")
		return gwNS + "/" + name
	}
	return ns + "/" + g
}

// checkHTTPRoute validates one spec.http entry written in namespace ns.
func (p *Policy) checkHTTPRoute(r *reporter, path string, h *networking.HTTPRoute, ns string) *httpRoute {
	rt := &httpRoute{path: path, spec: h, owner: r}
	ok := true
	for j, m := range h.GetMatch() {
		if !p.checkMatch(r, fmt.Sprintf("%s.match[%d]", path, j), m, ns) {
			ok = false
		}
	}
	actions := 0
	for _, set := range []bool{len(h.GetRoute()) > 0, h.GetRedirect() != nil, h.GetDirectResponse() != nil, h.GetDelegate() != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions == 0:
		r.errorf(CodeMissingField, path+".route", "one of route, redirect, directResponse or delegate is required")
		ok = false
	case actions > 1:
		r.errorf(CodeConflictingFields, path, "route, redirect, directResponse and delegate cannot be set together")
		ok = false
	}
	if h.GetRewrite() != nil && (h.GetRedirect() != nil || h.GetDirectResponse() != nil) {
		r.errorf(CodeConflictingFields, path+".rewrite", "rewrite cannot be set with redirect or directResponse")
		ok = false
	}
	if len(h.GetRoute()) > 0 {
		dests, dok := checkRouteDestinations(r, path, len(h.GetRoute()), func(i int) (*networking.Destination, int32, *networking.Headers) {
			d := h.GetRoute()[i]
			return d.GetDestination(), d.GetWeight(), d.GetHeaders()
		})
		rt.dests = dests
		ok = ok && dok
	}
	if d := h.GetDelegate(); d != nil {
		if d.GetName() == "" {
			r.errorf(CodeMissingField, path+".delegate.name", "delegate name is required")
			ok = false
		}
	}
	ok = checkRedirect(r, path+".redirect", h.GetRedirect()) && ok
	ok = checkDirectResponse(r, path+".directResponse", h.GetDirectResponse()) && ok
	ok = checkRewrite(r, path+".rewrite", h.GetRewrite()) && ok
	ok = checkRetries(r, path+".retries", h.GetRetries()) && ok
	ok = checkFault(r, path+".fault", h.GetFault()) && ok
	ok = checkHeaders(r, path+".headers", h.GetHeaders()) && ok
	ok = checkCORS(r, path+".corsPolicy", h.GetCorsPolicy()) && ok
	if t := h.GetTimeout(); t != nil && (t.AsDuration() < 0 || !t.IsValid()) {
		r.errorf(CodeInvalidValue, path+".timeout", "timeout must not be negative")
		ok = false
	}
	if m := h.GetMirror(); m != nil {
		d, dok := checkDestination(r, path+".mirror", m)
		ok = ok && dok
		if dok {
			d.percent = h.GetMirrorPercentage()
			rt.mirrors = append(rt.mirrors, d)
		}
	}
	ok = checkPercent(r, path+".mirrorPercentage", h.GetMirrorPercentage()) && ok
	for i, m := range h.GetMirrors() {
		mp := fmt.Sprintf("%s.mirrors[%d]", path, i)
		if m.GetDestination() == nil {
			r.errorf(CodeMissingField, mp+".destination", "destination is required")
			ok = false
			continue
		}
		d, dok := checkDestination(r, mp+".destination", m.GetDestination())
		ok = ok && dok && checkPercent(r, mp+".percentage", m.GetPercentage())
		if dok {
			d.path = mp
			d.percent = m.GetPercentage()
			rt.mirrors = append(rt.mirrors, d)
		}
	}
	rt.valid = ok
	return rt
}

// checkRouteDestinations validates n weighted destinations (http or tcp
// route entries); get returns the i-th destination, weight and headers.
//
// Weights follow Istio: they are relative (Envoy splits traffic in
// proportion to them), so any non-negative weights are accepted; a
// negative weight, or several destinations whose weights are all 0, is an
// error. Weights that do not sum to 100 are a warning, since that is most
// often a typo. A single destination takes all traffic whatever its
// weight.
func checkRouteDestinations(r *reporter, path string, n int, get func(int) (*networking.Destination, int32, *networking.Headers)) ([]routeDest, bool) {
	ok := true
	var sum int64
	weighted := false
	var out []routeDest
	for k := 0; k < n; k++ {
		p := fmt.Sprintf("%s.route[%d]", path, k)
		dst, w, headers := get(k)
		if w < 0 {
			r.errorf(CodeBadWeights, p+".weight", "weight %d must not be negative", w)
			ok = false
		}
		if w != 0 {
			weighted = true
		}
		sum += int64(max(w, 0))
		if !checkHeaders(r, p+".headers", headers) {
			ok = false
		}
		if dst == nil {
			r.errorf(CodeMissingField, p+".destination", "destination is required")
			ok = false
			continue
		}
		d, dok := checkDestination(r, p+".destination", dst)
		if !dok {
			ok = false
			continue
		}
		d.path, d.weight, d.headers = p, uint32(max(w, 0)), headers
		out = append(out, d)
	}
	switch {
	case n > 1 && sum == 0 && ok:
		r.errorf(CodeBadWeights, path+".route", "route weights are all 0: no destination would receive traffic")
		ok = false
	case n > 1 && weighted && sum != 100 && ok:
		r.warnf(CodeBadWeights, path+".route", "route weights sum to %d, not 100; traffic is split in proportion to them (%s)", sum, weightShares(out, sum))
	}
	if len(out) == 1 {
		out[0].weight = 100
	}
	return out, ok
}

// weightShares describes how traffic is split by weights that sum to sum:
// "reviews v1 66.7%, reviews v2 33.3%".
func weightShares(dests []routeDest, sum int64) string {
	parts := make([]string, 0, len(dests))
	for _, d := range dests {
		name := d.host
		if short, _, ok := splitLocal(d.host); ok {
			name = short
		}
		if d.subset != "" {
			name += " " + d.subset
		}
		share := strings.TrimSuffix(fmt.Sprintf("%.1f", float64(d.weight)*100/float64(sum)), ".0")
		parts = append(parts, fmt.Sprintf("%s %s%%", name, share))
	}
	return strings.Join(parts, ", ")
}

// checkDestination validates a Destination at path (its host resolved in
// the reporter's namespace). The returned routeDest's path is the
// destination's parent (diagnostics add ".destination.host" etc.).
func checkDestination(r *reporter, path string, dst *networking.Destination) (routeDest, bool) {
	parent := strings.TrimSuffix(path, ".destination")
	d := routeDest{path: parent, subset: dst.GetSubset()}
	host, ok := checkHost(r, path+".host", dst.GetHost())
	d.host = host
	if dst.GetPort() != nil {
		if !checkPort(r, path+".port.number", dst.GetPort().GetNumber()) {
			ok = false
		}
		d.port = dst.GetPort().GetNumber()
	}
	return d, ok
}

// checkMatch validates one HTTPMatchRequest written in namespace ns.
func (p *Policy) checkMatch(r *reporter, path string, m *networking.HTTPMatchRequest, ns string) bool {
	ok := checkStringMatch(r, path+".uri", m.GetUri(), true)
	ok = checkStringMatch(r, path+".method", m.GetMethod(), true) && ok
	ok = checkStringMatch(r, path+".authority", m.GetAuthority(), true) && ok
	ok = checkStringMatch(r, path+".scheme", m.GetScheme(), true) && ok
	for _, kind := range []struct {
		field string
		m     map[string]*networking.StringMatch
	}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
		for _, name := range sortedKeys(kind.m) {
			hp := path + "." + kind.field + "." + name
			_, isClaim := routingClaim(name)
			if !isClaim && !isHeaderName(name) {
				r.errorf(CodeInvalidValue, hp, "%q is not a valid header name", name)
				ok = false
				continue
			}
			if strings.HasPrefix(name, "@") && !isClaim {
				r.errorf(CodeUnsupportedValue, hp, "header %s: of the @ names only JWT claims (@request.auth.claims.<name> or @request.auth.claims[<name>]) are supported", name)
				ok = false
				continue
			}
			ok = checkStringMatch(r, hp, kind.m[name], false) && ok
		}
	}
	for _, name := range sortedKeys(m.GetQueryParams()) {
		qp := path + ".queryParams." + name
		if name == "" {
			r.errorf(CodeInvalidValue, qp, "query parameter name is empty")
			ok = false
			continue
		}
		ok = checkStringMatch(r, qp, m.GetQueryParams()[name], false) && ok
	}
	if m.GetPort() != 0 && !checkPort(r, path+".port", m.GetPort()) {
		ok = false
	}
	ok = checkLabels(r, path+".sourceLabels", m.GetSourceLabels()) && ok
	for i, g := range m.GetGateways() {
		if g == meshGateway {
			continue
		}
		if key := resolveGatewayName(g, ns); p.gateways[key] == nil {
			r.errorf(CodeUnknownGateway, fmt.Sprintf("%s.gateways[%d]", path, i), "gateway %s is not defined (no Gateway %s)", g, key)
			ok = false
		}
	}
	return ok
}

// checkStringMatch validates a StringMatch. A match without a value means
// "present" for headers and query parameters; uri, method, authority and
// scheme need one (required).
func checkStringMatch(r *reporter, path string, m *networking.StringMatch, required bool) bool {
	if m == nil {
		return true
	}
	switch x := m.GetMatchType().(type) {
	case nil:
		if required {
			r.errorf(CodeMissingField, path, "one of exact, prefix or regex is required")
			return false
		}
	case *networking.StringMatch_Regex:
		return checkRegex(r, path+".regex", x.Regex)
	}
	return true
}

// checkRegex checks that re is a valid RE2 expression (Go's regexp
// implements RE2 syntax, which Envoy's safe_regex uses).
func checkRegex(r *reporter, path, re string) bool {
	if re == "*" {
		return true // Istio turns "*" into a present match
	}
	if _, err := regexp.Compile(re); err != nil {
		r.errorf(CodeInvalidRegex, path, "invalid RE2 regular expression %q: %v", re, regexErrorText(err))
		return false
	}
	return true
}

func regexErrorText(err error) string {
	s := err.Error()
	return strings.TrimPrefix(s, "error parsing regexp: ")
}

// checkRedirect validates an HTTPRedirect.
func checkRedirect(r *reporter, path string, rd *networking.HTTPRedirect) bool {
	if rd == nil {
		return true
	}
	switch rd.GetRedirectCode() {
	case 0, 301, 302, 303, 307, 308:
	default:
		r.errorf(CodeInvalidValue, path+".redirectCode", "redirect code %d is not one of 301, 302, 303, 307, 308", rd.GetRedirectCode())
		return false
	}
	if x, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok && !checkPort(r, path+".port", x.Port) {
		return false
	}
	if s := rd.GetScheme(); s != "" && s != "http" && s != "https" {
		r.errorf(CodeInvalidValue, path+".scheme", "scheme %q is not http or https", s)
		return false
	}
	return true
}

// checkDirectResponse validates an HTTPDirectResponse.
func checkDirectResponse(r *reporter, path string, d *networking.HTTPDirectResponse) bool {
	if d == nil {
		return true
	}
	if d.GetStatus() < 200 || d.GetStatus() > 599 {
		r.errorf(CodeInvalidValue, path+".status", "status %d is not in 200-599", d.GetStatus())
		return false
	}
	if n := len(d.GetBody().GetString_()) + len(d.GetBody().GetBytes()); n > maxDirectResponseBody {
		r.errorf(CodeInvalidValue, path+".body", "body is %d bytes; at most %d are supported", n, maxDirectResponseBody)
		return false
	}
	return true
}

// checkRewrite validates an HTTPRewrite.
func checkRewrite(r *reporter, path string, rw *networking.HTTPRewrite) bool {
	if rw == nil {
		return true
	}
	if rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
		r.errorf(CodeConflictingFields, path+".uriRegexRewrite", "uri and uriRegexRewrite cannot both be set")
		return false
	}
	if rr := rw.GetUriRegexRewrite(); rr != nil {
		if rr.GetMatch() == "" {
			r.errorf(CodeMissingField, path+".uriRegexRewrite.match", "match is required")
			return false
		}
		return checkRegex(r, path+".uriRegexRewrite.match", rr.GetMatch())
	}
	if rw.GetUri() == "" && rw.GetAuthority() == "" {
		r.errorf(CodeMissingField, path, "one of uri, uriRegexRewrite or authority is required")
		return false
	}
	return true
}

// isRetryOn reports whether s is a retry condition Envoy knows (HTTP and
// gRPC).
func isRetryOn(s string) bool {
	switch s {
	case "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
		"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable":
		return true
	}
	return false
}

// checkRetries validates an HTTPRetry.
func checkRetries(r *reporter, path string, rt *networking.HTTPRetry) bool {
	if rt == nil {
		return true
	}
	ok := true
	if rt.GetAttempts() < 0 {
		r.errorf(CodeInvalidValue, path+".attempts", "attempts %d must not be negative", rt.GetAttempts())
		ok = false
	}
	if d := rt.GetPerTryTimeout(); d != nil && d.AsDuration() < 1e6 {
		r.errorf(CodeInvalidValue, path+".perTryTimeout", "perTryTimeout must be at least 1ms")
		ok = false
	}
	for _, part := range strings.Split(rt.GetRetryOn(), ",") {
		part = strings.TrimSpace(part)
		if part == "" || isRetryOn(part) {
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && http.StatusText(n) != "" {
			continue
		}
		r.errorf(CodeInvalidValue, path+".retryOn", "%q is neither a retry condition (5xx, gateway-error, connect-failure, ...) nor an HTTP status code", part)
		ok = false
	}
	return ok
}

// grpcCode returns the code of a gRPC status name an abort fault may
// return.
func grpcCode(name string) (uint32, bool) {
	for i, n := range []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"} {
		if n == name {
			return uint32(i), true
		}
	}
	return 0, false
}

// checkFault validates an HTTPFaultInjection.
func checkFault(r *reporter, path string, f *networking.HTTPFaultInjection) bool {
	if f == nil {
		return true
	}
	if f.GetDelay() == nil && f.GetAbort() == nil {
		r.errorf(CodeMissingField, path, "delay or abort is required")
		return false
	}
	ok := true
	if d := f.GetDelay(); d != nil {
		if d.GetFixedDelay() == nil {
			r.errorf(CodeMissingField, path+".delay.fixedDelay", "fixedDelay is required")
			ok = false
		} else if d.GetFixedDelay().AsDuration() < 1e6 {
			r.errorf(CodeInvalidValue, path+".delay.fixedDelay", "fixedDelay must be at least 1ms")
			ok = false
		}
		ok = checkPercent(r, path+".delay.percentage", d.GetPercentage()) && ok
	}
	if a := f.GetAbort(); a != nil {
		switch x := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if x.HttpStatus < 200 || x.HttpStatus > 599 {
				r.errorf(CodeInvalidValue, path+".abort.httpStatus", "status %d is not in 200-599", x.HttpStatus)
				ok = false
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if _, known := grpcCode(x.GrpcStatus); !known {
				r.errorf(CodeInvalidValue, path+".abort.grpcStatus", "%q is not a gRPC status name (UNAVAILABLE, DEADLINE_EXCEEDED, ...)", x.GrpcStatus)
				ok = false
			}
		case nil:
			r.errorf(CodeMissingField, path+".abort", "httpStatus or grpcStatus is required")
			ok = false
		default:
			ok = false // reported as an unsupported field while decoding
		}
		ok = checkPercent(r, path+".abort.percentage", a.GetPercentage()) && ok
	}
	return ok
}

// checkPercent validates a Percent (0-100).
func checkPercent(r *reporter, path string, p *networking.Percent) bool {
	if p == nil {
		return true
	}
	if v := p.GetValue(); v < 0 || v > 100 {
		r.errorf(CodeInvalidValue, path+".value", "percentage %v is not in 0-100", v)
		return false
	}
	return true
}

// checkHeaders validates header operations: names must be valid header
// names; pseudo-headers other than :authority cannot be changed.
func checkHeaders(r *reporter, path string, h *networking.Headers) bool {
	if h == nil {
		return true
	}
	ok := true
	for _, dir := range []struct {
		name string
		ops  *networking.Headers_HeaderOperations
	}{{"request", h.GetRequest()}, {"response", h.GetResponse()}} {
		if dir.ops == nil {
			continue
		}
		check := func(p, name string) {
			n := strings.TrimPrefix(name, ":")
			if !isHeaderName(n) || (strings.HasPrefix(name, ":") && name != ":authority") {
				r.errorf(CodeInvalidValue, p, "%q is not a header name that can be changed", name)
				ok = false
			}
		}
		for _, k := range sortedKeys(dir.ops.GetSet()) {
			check(path+"."+dir.name+".set."+k, k)
		}
		for _, k := range sortedKeys(dir.ops.GetAdd()) {
			check(path+"."+dir.name+".add."+k, k)
		}
		for i, k := range dir.ops.GetRemove() {
			check(fmt.Sprintf("%s.%s.remove[%d]", path, dir.name, i), k)
		}
	}
	return ok
}

// checkCORS validates a CorsPolicy.
func checkCORS(r *reporter, path string, c *networking.CorsPolicy) bool {
	if c == nil {
		return true
	}
	ok := true
	for i, o := range c.GetAllowOrigins() {
		ok = checkStringMatch(r, fmt.Sprintf("%s.allowOrigins[%d]", path, i), o, true) && ok
	}
	for i, m := range c.GetAllowMethods() {
		if !isHeaderName(m) {
			r.errorf(CodeInvalidValue, fmt.Sprintf("%s.allowMethods[%d]", path, i), "%q is not an HTTP method", m)
			ok = false
		}
	}
	if d := c.GetMaxAge(); d != nil && d.AsDuration() < 0 {
		r.errorf(CodeInvalidValue, path+".maxAge", "maxAge must not be negative")
		ok = false
	}
	return ok
}

// checkTCPRoute validates one spec.tcp entry written in namespace ns.
func (p *Policy) checkTCPRoute(r *reporter, path string, t *networking.TCPRoute, ns string) *tcpRoute {
	rt := &tcpRoute{path: path, spec: t, owner: r}
	ok := true
	for j, m := range t.GetMatch() {
		mp := fmt.Sprintf("%s.match[%d]", path, j)
		if m.GetPort() != 0 && !checkPort(r, mp+".port", m.GetPort()) {
			ok = false
		}
		ok = checkLabels(r, mp+".sourceLabels", m.GetSourceLabels()) && ok
		for i, g := range m.GetGateways() {
			if g == meshGateway {
				continue
			}
			if key := resolveGatewayName(g, ns); p.gateways[key] == nil {
				r.errorf(CodeUnknownGateway, fmt.Sprintf("%s.gateways[%d]", mp, i), "gateway %s is not defined (no Gateway %s)", g, key)
				ok = false
			}
		}
	}
	if len(t.GetRoute()) == 0 {
		r.errorf(CodeMissingField, path+".route", "route is required")
		rt.valid = false
		return rt
	}
	dests, dok := checkRouteDestinations(r, path, len(t.GetRoute()), func(i int) (*networking.Destination, int32, *networking.Headers) {
		d := t.GetRoute()[i]
		return d.GetDestination(), d.GetWeight(), nil
	})
	rt.dests = dests
	rt.valid = ok && dok
	return rt
}

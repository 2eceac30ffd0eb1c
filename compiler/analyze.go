package compiler

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
)

// This file holds the analyzers that look at a VirtualService's rules as a
// whole, in the spirit of istioctl analyze: rules that can never be used
// (IST0130) and matches an earlier match already covers (IST0131). Routes
// are matched in order and the first match wins, so a rule after a
// catch-all, or a match covered by an earlier one, has no effect.

// analyzeRules reports unreachable rules and ineffective matches of v's
// http routes as written (delegates are analyzed on their own), and of
// its tcp routes as istioctl does (IST0130/IST0131): a tcp match has no
// effect when it is identical to an earlier one.
func (p *Policy) analyzeRules(r *reporter, v *virtualService) {
	var httpRules [][]*networking.HTTPMatchRequest
	for _, rt := range v.obj.Spec.GetHttp() {
		httpRules = append(httpRules, rt.GetMatch())
	}
	analyzeMatches(r, "spec.http", "request", httpRules, matchCovers, isCatchAllMatch,
		"this match has no effect: %s before it matches every request it matches")
	var tcpRules [][]*networking.L4MatchAttributes
	for _, rt := range v.obj.Spec.GetTcp() {
		tcpRules = append(tcpRules, rt.GetMatch())
	}
	analyzeMatches(r, "spec.tcp", "connection", tcpRules,
		func(a, b *networking.L4MatchAttributes) bool { return proto.Equal(a, b) },
		func(*networking.L4MatchAttributes) bool { return false },
		"this match has no effect: %s before it is the same match")
}

// analyzeMatches reports, for the rules at field (each a list of matches,
// first match wins), every rule after a catch-all (a rule without matches,
// or one of whose matches isCatchAll) and every rule whose matches are all
// covered by earlier ones as unreachable (GM0301), and each other covered
// match as ineffective (GM0302, message ineffective with the covering
// match's path). unit names what is matched: "request" or "connection".
func analyzeMatches[M any](r *reporter, field, unit string, rules [][]M, covers func(earlier, m M) bool, isCatchAll func(M) bool, ineffective string) {
	type seenMatch struct {
		m    M
		path string
	}
	var earlier []seenMatch
	catchAll := ""
	for i, matches := range rules {
		path := fmt.Sprintf("%s[%d]", field, i)
		if catchAll != "" {
			r.warnf(CodeUnreachableRule, path, "this rule is never used: rule %s before it matches every %s", catchAll, unit)
			continue
		}
		if len(matches) == 0 {
			catchAll = path
			continue
		}
		var shadowed [][2]string // match path, covering path
		for j, m := range matches {
			mp := fmt.Sprintf("%s.match[%d]", path, j)
			for _, e := range earlier {
				if covers(e.m, m) {
					shadowed = append(shadowed, [2]string{mp, e.path})
					break
				}
			}
			earlier = append(earlier, seenMatch{m, mp})
			if isCatchAll(m) {
				catchAll = mp
			}
		}
		if len(shadowed) == len(matches) {
			r.warnf(CodeUnreachableRule, path, "this rule is never used: every match is already matched by an earlier one (%s)", shadowed[0][1])
			continue
		}
		for _, sh := range shadowed {
			r.warnf(CodeIneffectiveMatch, sh[0], ineffective, sh[1])
		}
	}
}

// isCatchAllMatch reports whether m matches every request: no conditions
// but a uri prefix "/" or regex ".*" (what Istio calls a catch-all route).
func isCatchAllMatch(m *networking.HTTPMatchRequest) bool {
	return matchCovers(m, &networking.HTTPMatchRequest{})
}

// matchCovers reports whether every request b matches is matched by a.
// It is conservative: false unless it can tell.
func matchCovers(a, b *networking.HTTPMatchRequest) bool {
	if !uriCovers(a, b) {
		return false
	}
	for _, pair := range [][2]*networking.StringMatch{
		{a.GetScheme(), b.GetScheme()}, {a.GetMethod(), b.GetMethod()}, {a.GetAuthority(), b.GetAuthority()},
	} {
		if !stringCovers(pair[0], pair[1]) {
			return false
		}
	}
	for _, maps := range [][2]map[string]*networking.StringMatch{
		{a.GetHeaders(), b.GetHeaders()}, {a.GetQueryParams(), b.GetQueryParams()},
	} {
		for k, am := range maps[0] {
			bm, ok := maps[1][k]
			if !ok || !stringCovers(am, bm) {
				return false
			}
		}
	}
	for k, am := range a.GetWithoutHeaders() {
		if bm, ok := b.GetWithoutHeaders()[k]; !ok || !proto.Equal(am, bm) {
			return false
		}
	}
	if a.GetPort() != 0 && a.GetPort() != b.GetPort() {
		return false
	}
	if a.GetSourceNamespace() != "" && a.GetSourceNamespace() != b.GetSourceNamespace() {
		return false
	}
	if !labelsMatch(a.GetSourceLabels(), b.GetSourceLabels()) {
		return false
	}
	if len(a.GetGateways()) > 0 {
		if len(b.GetGateways()) == 0 {
			return false
		}
		for _, g := range b.GetGateways() {
			found := false
			for _, ag := range a.GetGateways() {
				found = found || ag == g
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// uriCovers compares the uri conditions, minding ignoreUriCase.
func uriCovers(a, b *networking.HTTPMatchRequest) bool {
	au := a.GetUri()
	if au == nil || au.GetPrefix() == "/" || au.GetRegex() == ".*" {
		return true
	}
	bu := b.GetUri()
	if bu == nil {
		return false
	}
	if !a.GetIgnoreUriCase() && b.GetIgnoreUriCase() {
		return false // b matches more spellings than a
	}
	if a.GetIgnoreUriCase() {
		au = lowerStringMatch(au)
		bu = lowerStringMatch(bu)
	}
	return stringCovers(au, bu)
}

func lowerStringMatch(m *networking.StringMatch) *networking.StringMatch {
	switch x := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: strings.ToLower(x.Exact)}}
	case *networking.StringMatch_Prefix:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: strings.ToLower(x.Prefix)}}
	}
	return m
}

// stringCovers reports whether every value b matches is matched by a. A
// nil a matches anything; a StringMatch without a type is a presence match.
func stringCovers(a, b *networking.StringMatch) bool {
	switch {
	case a == nil:
		return true
	case b == nil:
		return false
	case a.GetMatchType() == nil || a.GetRegex() == "*":
		return true // present: b requires the header too
	}
	switch x := a.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return b.GetExact() == x.Exact && b.GetMatchType() != nil && b.GetPrefix() == "" && b.GetRegex() == ""
	case *networking.StringMatch_Prefix:
		if e, ok := b.GetMatchType().(*networking.StringMatch_Exact); ok {
			return strings.HasPrefix(e.Exact, x.Prefix)
		}
		if pr, ok := b.GetMatchType().(*networking.StringMatch_Prefix); ok {
			return strings.HasPrefix(pr.Prefix, x.Prefix)
		}
	case *networking.StringMatch_Regex:
		return x.Regex == ".*" || b.GetRegex() == x.Regex
	}
	return false
}

// checkTCPPorts warns about TCP ports that more than one service
// declares: a sidecar listens once per TCP port (docs/xds-conventions.md),
// so only the first service (by host) is reachable there.
func (p *Policy) checkTCPPorts(diags *Diagnostics) {
	first := map[uint32]*service{}
	for _, s := range p.services {
		for i, pt := range s.ports {
			if pt.protocol != protoTCP {
				continue
			}
			f, ok := first[pt.number]
			if !ok {
				first[pt.number] = s
				continue
			}
			r := serviceReporter(s, diags)
			r.warnf(CodeSharedTCPPort, servicePortPath(s, pt.number, i), "TCP port %d is also a port of %s: sidecars listen once per TCP port and send it to %s",
				pt.number, f.fqdn, f.fqdn)
		}
	}
}

// portPath returns the path of the spec.ports entry with number n.
func portPath(ports []*networking.ServicePort, n uint32, fallback int) string {
	for i, pt := range ports {
		if pt.GetNumber() == n {
			return fmt.Sprintf("spec.ports[%d].number", i)
		}
	}
	return fmt.Sprintf("spec.ports[%d].number", fallback)
}

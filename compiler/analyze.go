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
// http routes as written (delegates are analyzed on their own).
func (p *Policy) analyzeRules(r *reporter, v *virtualService) {
	type seenMatch struct {
		m    *networking.HTTPMatchRequest
		path string
	}
	var earlier []seenMatch
	catchAll := ""
	for i, rt := range v.obj.Spec.GetHttp() {
		path := fmt.Sprintf("spec.http[%d]", i)
		if catchAll != "" {
			r.warnf(CodeUnreachableRule, path, "this rule is never used: rule %s before it matches every request", catchAll)
			continue
		}
		if len(rt.GetMatch()) == 0 {
			catchAll = path
			continue
		}
		var shadowed []string
		for j, m := range rt.GetMatch() {
			mp := fmt.Sprintf("%s.match[%d]", path, j)
			by := ""
			for _, e := range earlier {
				if matchCovers(e.m, m) {
					by = e.path
					break
				}
			}
			earlier = append(earlier, seenMatch{m, mp})
			if by != "" {
				shadowed = append(shadowed, mp+"|"+by)
			}
			if isCatchAllMatch(m) {
				catchAll = mp
			}
		}
		if len(shadowed) == len(rt.GetMatch()) {
			_, by, _ := strings.Cut(shadowed[0], "|")
			r.warnf(CodeUnreachableRule, path, "this rule is never used: every match is already matched by an earlier one (%s)", by)
			continue
		}
		for _, s := range shadowed {
			mp, by, _ := strings.Cut(s, "|")
			r.warnf(CodeIneffectiveMatch, mp, "this match has no effect: %s before it matches every request it matches", by)
		}
	}
}

// analyzeTCPRules reports unreachable rules and ineffective matches of v's
// tcp routes as istioctl does (IST0130/IST0131): a rule after one without
// matches is never used, and a match identical to an earlier one has no
// effect (a rule whose matches all repeat earlier ones is never used).
func (p *Policy) analyzeTCPRules(r *reporter, v *virtualService) {
	type seenMatch struct {
		m    *networking.L4MatchAttributes
		path string
	}
	var earlier []seenMatch
	catchAll := ""
	for i, rt := range v.obj.Spec.GetTcp() {
		path := fmt.Sprintf("spec.tcp[%d]", i)
		if catchAll != "" {
			r.warnf(CodeUnreachableRule, path, "this rule is never used: rule %s before it matches every connection", catchAll)
			continue
		}
		if len(rt.GetMatch()) == 0 {
			catchAll = path
			continue
		}
		var shadowed []string
		for j, m := range rt.GetMatch() {
			mp := fmt.Sprintf("%s.match[%d]", path, j)
			by := ""
			for _, e := range earlier {
				if proto.Equal(e.m, m) {
					by = e.path
					break
				}
			}
			earlier = append(earlier, seenMatch{m, mp})
			if by != "" {
				shadowed = append(shadowed, mp+"|"+by)
			}
		}
		if len(shadowed) == len(rt.GetMatch()) {
			_, by, _ := strings.Cut(shadowed[0], "|")
			r.warnf(CodeUnreachableRule, path, "this rule is never used: every match is already matched by an earlier one (%s)", by)
			continue
		}
		for _, sh := range shadowed {
			mp, by, _ := strings.Cut(sh, "|")
			r.warnf(CodeIneffectiveMatch, mp, "this match has no effect: %s before it is the same match", by)
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

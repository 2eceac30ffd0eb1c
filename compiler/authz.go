package compiler

import (
	"fmt"
	"slices"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	security "istio.io/api/security/v1beta1"
)

// Security kinds the compiler compiles (security.istio.io v1 and v1beta1).
const (
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"
)

// AuthorizationPolicy is a decoded security.istio.io AuthorizationPolicy.
type AuthorizationPolicy struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *security.AuthorizationPolicy
	// valid is false when validation reported an error: the policy is
	// then left out of compiled output.
	valid bool
}

// RequestAuthentication is a decoded security.istio.io RequestAuthentication.
type RequestAuthentication struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec  *security.RequestAuthentication
	valid bool
}

// isAuthzKind reports whether kind is a security kind this file compiles.
func isAuthzKind(kind string) bool {
	return kind == KindAuthorizationPolicy || kind == KindRequestAuthentication
}

// parseAuthz decodes and validates an AuthorizationPolicy or
// RequestAuthentication (Istio's ValidateAuthorizationPolicy and
// ValidateRequestAuthentication) and adds it to p.
func (p *Policy) parseAuthz(r *reporter, meta Meta, kind string, spec any) {
	switch kind {
	case KindAuthorizationPolicy:
		x := &AuthorizationPolicy{Meta: meta, Spec: &security.AuthorizationPolicy{}}
		r = r.with(&x.Object)
		if decodeSpec(r, spec, x.Spec) {
			n := len(*r.diag)
			checkAuthorizationPolicy(r, x)
			x.valid = !Diagnostics((*r.diag)[n:]).HasErrors()
			p.AuthorizationPolicies = append(p.AuthorizationPolicies, x)
		}
	case KindRequestAuthentication:
		x := &RequestAuthentication{Meta: meta, Spec: &security.RequestAuthentication{}}
		r = r.with(&x.Object)
		if decodeSpec(r, spec, x.Spec) {
			n := len(*r.diag)
			checkRequestAuthentication(r, x)
			x.valid = !Diagnostics((*r.diag)[n:]).HasErrors()
			p.RequestAuthentications = append(p.RequestAuthentications, x)
		}
	}
}

// checkSelector checks spec.selector.matchLabels as Istio's
// validateWorkloadSelector: keys and values must be non-empty keys, no
// wildcard.
func checkSelector(r *reporter, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if k == "" {
			r.errorf(CodeInvalidValue, "spec.selector.matchLabels", "empty label key")
		}
		if strings.Contains(labels[k], "*") {
			r.errorf(CodeInvalidValue, "spec.selector.matchLabels."+k, "wildcard is not supported in selector")
		}
	}
}

func checkAuthorizationPolicy(r *reporter, ap *AuthorizationPolicy) {
	spec := ap.Spec
	checkSelector(r, spec.GetSelector().GetMatchLabels())
	if spec.GetAction() == security.AuthorizationPolicy_CUSTOM {
		r.errorf(CodeUnsupportedValue, "spec.action", "action CUSTOM (external authorization) is not supported; the policy is not enforced, so it is rejected rather than ignored")
		return
	}
	if spec.GetAction() == security.AuthorizationPolicy_DENY && spec.Rules == nil {
		r.errorf(CodeMissingField, "spec.rules", "DENY action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to deny every request")
	}
	for i, rule := range spec.GetRules() {
		base := fmt.Sprintf("spec.rules[%d]", i)
		before := len(*r.diag)
		if rule == nil {
			r.errorf(CodeInvalidValue, base, "`rule` must not be null")
			continue
		}
		if rule.From != nil && len(rule.From) == 0 {
			r.errorf(CodeInvalidValue, base+".from", "`from` must not be empty")
		}
		for j, from := range rule.GetFrom() {
			path := fmt.Sprintf("%s.from[%d].source", base, j)
			src := from.GetSource()
			if src == nil {
				r.errorf(CodeMissingField, path, "`from.source` must not be empty")
				continue
			}
			if !sourceHasValues(src) {
				r.errorf(CodeInvalidValue, path, "`from.source` must not be empty")
			}
			if len(src.GetPrincipals())+len(src.GetNotPrincipals())+len(src.GetNamespaces())+len(src.GetNotNamespaces()) > 0 &&
				len(src.GetServiceAccounts())+len(src.GetNotServiceAccounts()) > 0 {
				r.errorf(CodeConflictingFields, path+".serviceAccounts", "cannot set serviceAccounts with namespaces or principals")
			}
			checkValues(r, path+".principals", src.GetPrincipals(), checkPrincipal)
			checkValues(r, path+".notPrincipals", src.GetNotPrincipals(), checkPrincipal)
			checkValues(r, path+".ipBlocks", src.GetIpBlocks(), checkIPBlock)
			checkValues(r, path+".notIpBlocks", src.GetNotIpBlocks(), checkIPBlock)
			checkValues(r, path+".remoteIpBlocks", src.GetRemoteIpBlocks(), checkIPBlock)
			checkValues(r, path+".notRemoteIpBlocks", src.GetNotRemoteIpBlocks(), checkIPBlock)
			for _, list := range []struct {
				name string
				vals []string
			}{
				{"namespaces", src.GetNamespaces()}, {"notNamespaces", src.GetNotNamespaces()},
				{"requestPrincipals", src.GetRequestPrincipals()}, {"notRequestPrincipals", src.GetNotRequestPrincipals()},
			} {
				checkValues(r, path+"."+list.name, list.vals, checkWildcard)
			}
			checkValues(r, path+".serviceAccounts", src.GetServiceAccounts(), checkServiceAccount)
			checkValues(r, path+".notServiceAccounts", src.GetNotServiceAccounts(), checkServiceAccount)
			checkValues(r, path+".trustDomains", src.GetTrustDomains(), checkTrustDomain)
			checkValues(r, path+".notTrustDomains", src.GetNotTrustDomains(), checkTrustDomain)
		}
		if rule.To != nil && len(rule.To) == 0 {
			r.errorf(CodeInvalidValue, base+".to", "`to` must not be empty")
		}
		for j, to := range rule.GetTo() {
			path := fmt.Sprintf("%s.to[%d].operation", base, j)
			op := to.GetOperation()
			if op == nil {
				r.errorf(CodeMissingField, path, "`to.operation` must not be empty")
				continue
			}
			if len(op.GetHosts())+len(op.GetNotHosts())+len(op.GetPorts())+len(op.GetNotPorts())+len(op.GetMethods())+
				len(op.GetNotMethods())+len(op.GetPaths())+len(op.GetNotPaths()) == 0 {
				r.errorf(CodeInvalidValue, path, "`to.operation` must not be empty")
			}
			checkValues(r, path+".ports", op.GetPorts(), checkPortValue)
			checkValues(r, path+".notPorts", op.GetNotPorts(), checkPortValue)
			checkValues(r, path+".paths", op.GetPaths(), checkPath)
			checkValues(r, path+".notPaths", op.GetNotPaths(), checkPath)
			for _, list := range []struct {
				name string
				vals []string
			}{{"hosts", op.GetHosts()}, {"notHosts", op.GetNotHosts()}, {"methods", op.GetMethods()}, {"notMethods", op.GetNotMethods()}} {
				checkValues(r, path+"."+list.name, list.vals, checkWildcard)
			}
		}
		for j, w := range rule.GetWhen() {
			checkCondition(r, fmt.Sprintf("%s.when[%d]", base, j), ap.Namespace, w)
		}
		if _, err := rbacPolicyFor(ap.Namespace, rule, false, true); err != nil && !Diagnostics((*r.diag)[before:]).HasErrors() {
			r.errorf(CodeInvalidValue, base, "%v", err)
		}
	}
}

func sourceHasValues(s *security.Source) bool {
	return len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals())+
		len(s.GetNamespaces())+len(s.GetNotNamespaces())+len(s.GetIpBlocks())+len(s.GetNotIpBlocks())+
		len(s.GetRemoteIpBlocks())+len(s.GetNotRemoteIpBlocks())+len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts())+
		len(s.GetTrustDomains())+len(s.GetNotTrustDomains()) > 0
}

// checkValues runs check on each value at path[i].
func checkValues(r *reporter, path string, vals []string, check func(r *reporter, path, v string)) {
	for i, v := range vals {
		check(r, fmt.Sprintf("%s[%d]", path, i), v)
	}
}

// checkWildcard reports an empty value (an error, as Istio's
// CheckEmptyValues) and warns about a "*" that is not alone, a prefix or a
// suffix: Istio accepts it and matches it literally.
func checkWildcard(r *reporter, path, v string) {
	if v == "" {
		r.errorf(CodeInvalidValue, path, "empty value not allowed")
		return
	}
	if !wildcardOK(v) {
		r.warnf(CodeInvalidValue, path, "%q: a wildcard (*) is only special alone, at the start or at the end; here it is matched literally", v)
	}
}

func wildcardOK(v string) bool {
	n := strings.Count(v, "*")
	return n == 0 || v == "*" || n == 1 && (strings.HasPrefix(v, "*") || strings.HasSuffix(v, "*"))
}

// checkStrictWildcard is Istio's CheckWildcardValues (source.principal and
// trust domains): a misplaced wildcard is an error.
func checkStrictWildcard(r *reporter, path, v string) {
	if v == "" {
		r.errorf(CodeInvalidValue, path, "empty value not allowed")
		return
	}
	if !wildcardOK(v) {
		r.errorf(CodeInvalidValue, path, "%q: at most one wildcard (*), alone, at the start or at the end", v)
	}
}

func checkTrustDomain(r *reporter, path, v string) {
	checkStrictWildcard(r, path, v)
	if strings.Contains(v, "/") {
		r.errorf(CodeInvalidValue, path, "%q: a trust domain must not contain '/'", v)
	}
}

// checkServiceAccount is Istio's CheckServiceAccount: "name" or
// "namespace/name", no wildcard.
func checkServiceAccount(r *reporter, path, v string) {
	ns, sa, hasNS := strings.Cut(v, "/")
	switch {
	case v == "":
		r.errorf(CodeInvalidValue, path, "empty value not allowed")
	case strings.Contains(v, "*"):
		r.errorf(CodeInvalidValue, path, "%q: wildcard not allowed in service accounts", v)
	case strings.Count(v, "/") > 1 || hasNS && (ns == "" || sa == ""):
		r.errorf(CodeInvalidValue, path, "%q: expected 'serviceAccount' or 'namespace/serviceAccount'", v)
	}
}

func checkPrincipal(r *reporter, path, v string) {
	checkWildcard(r, path, v)
	if strings.HasPrefix(v, spiffePrefix) {
		r.warnf(CodeInvalidValue, path, "%q: principals are written without %q (cluster.local/ns/<namespace>/sa/<account>); this one never matches", v, spiffePrefix)
	}
}

func checkIPBlock(r *reporter, path, v string) {
	if _, err := cidrRange(v); err != nil {
		r.errorf(CodeInvalidValue, path, "%v", err)
	}
}

func checkPortValue(r *reporter, path, v string) {
	if _, err := parsePort(v); err != nil {
		r.errorf(CodeInvalidPort, path, "%v", err)
	}
}

func checkPath(r *reporter, path, v string) {
	if strings.Contains(v, "{") || strings.Contains(v, "}") {
		r.errorf(CodeUnsupportedValue, path, "%q: path templates ({*}, {**}) are not supported", v)
		return
	}
	checkWildcard(r, path, v)
}

// checkCondition checks a `when` entry as Istio's ValidateAttribute.
func checkCondition(r *reporter, path, ns string, w *security.Condition) {
	key := w.GetKey()
	if key == "" {
		r.errorf(CodeMissingField, path+".key", "`key` must not be empty")
		return
	}
	if len(w.GetValues()) == 0 && len(w.GetNotValues()) == 0 {
		r.errorf(CodeMissingField, path, "at least one of `values` or `notValues` must be set for key %s", key)
		return
	}
	if strings.HasPrefix(key, attrExperimental) {
		r.errorf(CodeUnsupportedValue, path+".key", "key %s: experimental Envoy metadata conditions are not supported", key)
		return
	}
	if _, _, err := whenCondition(ns, key); err != nil {
		r.errorf(CodeInvalidValue, path+".key", "%v", err)
		return
	}
	var check func(*reporter, string, string)
	switch key {
	case attrSrcIP, attrRemoteIP, attrDestIP:
		check = checkIPBlock
	case attrDestPort:
		check = checkPortValue
	case attrSrcPrincipal:
		check = func(r *reporter, path, v string) {
			checkStrictWildcard(r, path, v)
			if strings.HasPrefix(v, spiffePrefix) {
				checkPrincipal(r, path, v)
			}
		}
	case attrSrcTrustDomain:
		check = checkTrustDomain
	case attrSrcServiceAccount:
		check = checkServiceAccount
	default:
		check = checkWildcard
	}
	checkValues(r, path+".values", w.GetValues(), check)
	checkValues(r, path+".notValues", w.GetNotValues(), check)
}

// appliesTo reports whether a policy of namespace ns with selector applies
// to a workload: policies of the root namespace apply mesh-wide, others to
// their namespace; a selector narrows either to matching labels. The root
// namespace is WithRootNamespace's, as for PeerAuthentication.
func (p *Policy) appliesTo(ns string, selector map[string]string, class string, labels map[string]string) bool {
	if ns != p.mtls.rootNamespace && ns != class {
		return false
	}
	return labelsMatch(selector, labels)
}

// authzFilters returns the RBAC filters configs of the AuthorizationPolicies
// applying to a workload, in Istio's order: AUDIT (action LOG), DENY, ALLOW.
// A policy without rules never matches: for ALLOW that is Istio's
// allow-nothing. forTCP builds the rules of a TCP filter chain, where an
// ALLOW rule with HTTP-only conditions is left out (so such a policy
// denies TCP traffic) and HTTP-only conditions of other rules are dropped.
func (p *Policy) authzFilters(ns string, labels map[string]string, forTCP bool) []*rbacv3.RBAC {
	byAction := map[rbacv3.RBAC_Action]*rbacv3.RBAC{}
	for _, ap := range p.AuthorizationPolicies {
		if !ap.valid || !p.appliesTo(ap.Namespace, ap.Spec.GetSelector().GetMatchLabels(), ns, labels) {
			continue
		}
		var action rbacv3.RBAC_Action
		switch ap.Spec.GetAction() {
		case security.AuthorizationPolicy_ALLOW:
			action = rbacv3.RBAC_ALLOW
		case security.AuthorizationPolicy_DENY:
			action = rbacv3.RBAC_DENY
		case security.AuthorizationPolicy_AUDIT:
			action = rbacv3.RBAC_LOG
		default:
			continue
		}
		rules := byAction[action]
		if rules == nil {
			rules = &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
			byAction[action] = rules
		}
		for i, rule := range ap.Spec.GetRules() {
			pol, err := rbacPolicyFor(ap.Namespace, rule, forTCP, action == rbacv3.RBAC_ALLOW)
			if err != nil {
				continue // reported by checkAuthorizationPolicy
			}
			rules.Policies[rbacPolicyName(ap.Namespace, ap.Name, i)] = pol
		}
		if len(ap.Spec.GetRules()) == 0 {
			rules.Policies[rbacPolicyName(ap.Namespace, ap.Name, 0)] = rbacMatchNever()
		}
	}
	var out []*rbacv3.RBAC
	for _, a := range []rbacv3.RBAC_Action{rbacv3.RBAC_LOG, rbacv3.RBAC_DENY, rbacv3.RBAC_ALLOW} {
		if r := byAction[a]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

// rbacPolicyName is Istio's policy name: ns[<ns>]-policy[<name>]-rule[<i>].
func rbacPolicyName(ns, name string, rule int) string {
	return fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", ns, name, rule)
}

// rbacMatchNever is Istio's policy for a policy without rules.
func rbacMatchNever() *rbacv3.Policy {
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}}}},
	}
}

// sortAuthz orders the security kinds by namespace and name.
func (p *Policy) sortAuthz() {
	slices.SortFunc(p.AuthorizationPolicies, func(a, b *AuthorizationPolicy) int { return compareMeta(&a.Meta, &b.Meta) })
	slices.SortFunc(p.RequestAuthentications, func(a, b *RequestAuthentication) int { return compareMeta(&a.Meta, &b.Meta) })
}

func compareMeta(a, b *Meta) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// supportedAuthzField reports whether the compiler implements a field
// ("message.field") of AuthorizationPolicy or RequestAuthentication. Not
// listed: targetRef(s) (waypoints and gateways by reference) and provider
// (CUSTOM, reported on its own).
func supportedAuthzField(name string) bool {
	switch name {
	case "istio.security.v1beta1.AuthorizationPolicy.selector",
		"istio.security.v1beta1.AuthorizationPolicy.rules",
		"istio.security.v1beta1.AuthorizationPolicy.action",
		"istio.type.v1beta1.WorkloadSelector.match_labels",
		"istio.security.v1beta1.Rule.from",
		"istio.security.v1beta1.Rule.to",
		"istio.security.v1beta1.Rule.when",
		"istio.security.v1beta1.Rule.From.source",
		"istio.security.v1beta1.Rule.To.operation",
		"istio.security.v1beta1.Source.principals",
		"istio.security.v1beta1.Source.not_principals",
		"istio.security.v1beta1.Source.request_principals",
		"istio.security.v1beta1.Source.not_request_principals",
		"istio.security.v1beta1.Source.namespaces",
		"istio.security.v1beta1.Source.not_namespaces",
		"istio.security.v1beta1.Source.service_accounts",
		"istio.security.v1beta1.Source.not_service_accounts",
		"istio.security.v1beta1.Source.ip_blocks",
		"istio.security.v1beta1.Source.not_ip_blocks",
		"istio.security.v1beta1.Source.remote_ip_blocks",
		"istio.security.v1beta1.Source.not_remote_ip_blocks",
		"istio.security.v1beta1.Source.trust_domains",
		"istio.security.v1beta1.Source.not_trust_domains",
		"istio.security.v1beta1.Operation.hosts",
		"istio.security.v1beta1.Operation.not_hosts",
		"istio.security.v1beta1.Operation.ports",
		"istio.security.v1beta1.Operation.not_ports",
		"istio.security.v1beta1.Operation.methods",
		"istio.security.v1beta1.Operation.not_methods",
		"istio.security.v1beta1.Operation.paths",
		"istio.security.v1beta1.Operation.not_paths",
		"istio.security.v1beta1.Condition.key",
		"istio.security.v1beta1.Condition.values",
		"istio.security.v1beta1.Condition.not_values",
		"istio.security.v1beta1.RequestAuthentication.selector",
		"istio.security.v1beta1.RequestAuthentication.jwt_rules",
		"istio.security.v1beta1.JWTRule.issuer",
		"istio.security.v1beta1.JWTRule.audiences",
		"istio.security.v1beta1.JWTRule.jwks_uri",
		"istio.security.v1beta1.JWTRule.jwks",
		"istio.security.v1beta1.JWTRule.from_headers",
		"istio.security.v1beta1.JWTRule.from_params",
		"istio.security.v1beta1.JWTRule.from_cookies",
		"istio.security.v1beta1.JWTRule.output_payload_to_header",
		"istio.security.v1beta1.JWTRule.forward_original_token",
		"istio.security.v1beta1.JWTRule.output_claim_to_headers",
		"istio.security.v1beta1.JWTRule.space_delimited_claims",
		"istio.security.v1beta1.JWTRule.timeout",
		"istio.security.v1beta1.JWTHeader.name",
		"istio.security.v1beta1.JWTHeader.prefix",
		"istio.security.v1beta1.ClaimToHeader.header",
		"istio.security.v1beta1.ClaimToHeader.claim":
		return true
	}
	return false
}

package compiler

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"
)

// This file is Istio's RBAC translation (pilot/pkg/security/authz/model):
// one AuthorizationPolicy rule becomes one rbac.v3.Policy whose
// permissions (one per `to`, ANDed conditions) and principals (one per
// `from`) are built condition by condition in Istio's order.

// Attribute keys of `when` conditions (Istio's names).
const (
	attrRequestHeader     = "request.headers"
	attrSrcIP             = "source.ip"
	attrRemoteIP          = "remote.ip"
	attrSrcNamespace      = "source.namespace"
	attrSrcServiceAccount = "source.serviceAccount"
	attrSrcTrustDomain    = "source.trustDomain"
	attrSrcPrincipal      = "source.principal"
	attrRequestPrincipal  = "request.auth.principal"
	attrRequestAudiences  = "request.auth.audiences"
	attrRequestPresenter  = "request.auth.presenter"
	attrRequestClaims     = "request.auth.claims"
	attrDestIP            = "destination.ip"
	attrDestPort          = "destination.port"
	attrConnSNI           = "connection.sni"
	attrExperimental      = "experimental.envoy.filters."
)

// jwtPayloadKey is where jwt_authn puts a verified token's claims
// (payload_in_metadata), read by RBAC metadata matchers and routes.
const jwtPayloadKey = "payload"

// spiffePrefix is the scheme of SPIFFE ids; AuthorizationPolicy principals
// are written without it.
const spiffePrefix = "spiffe://"

// condition is one attribute of a rule: values are ORed, notValues become
// not(or(...)); conditions of a rule are ANDed.
type condition struct {
	key string
	// httpOnly conditions (hosts, methods, paths, request headers, JWT
	// attributes) cannot be checked on a TCP filter chain.
	httpOnly          bool
	values, notVals   []string
	permission        func(key, v string) (*rbacv3.Permission, error)
	principal         func(key, v string) (*rbacv3.Principal, error)
	extendedPrincipal func(key string, vs []string) (*rbacv3.Principal, error)
}

// rbacPolicyFor translates one rule of a policy in namespace ns. For a TCP
// filter chain (forTCP) HTTP-only conditions fail the rule of an ALLOW
// policy (allow: Istio skips it, a smaller allow) and are dropped from
// other rules (a wider deny or audit), as Istio's checkError.
func rbacPolicyFor(ns string, rule *security.Rule, forTCP, allow bool) (*rbacv3.Policy, error) {
	var basePerm, basePrin []condition
	for _, w := range rule.GetWhen() {
		c, isPerm, err := whenCondition(ns, w.GetKey())
		if err != nil {
			return nil, err
		}
		c.values, c.notVals = w.GetValues(), w.GetNotValues()
		if isPerm {
			basePerm = append(basePerm, c)
		} else {
			basePrin = append(basePrin, c)
		}
	}
	front := func(list []condition, c condition, values, notValues []string) []condition {
		if len(values) == 0 && len(notValues) == 0 {
			return list
		}
		c.values, c.notVals = values, notValues
		return append([]condition{c}, list...)
	}
	var prinLists, permLists [][]condition
	for _, from := range rule.GetFrom() {
		list := append([]condition(nil), basePrin...)
		if s := from.GetSource(); s != nil {
			list = front(list, condition{key: attrSrcIP, principal: srcIPPrincipal}, s.GetIpBlocks(), s.GetNotIpBlocks())
			list = front(list, condition{key: attrRemoteIP, principal: remoteIPPrincipal}, s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks())
			list = front(list, condition{key: attrSrcNamespace, principal: namespacePrincipal}, s.GetNamespaces(), s.GetNotNamespaces())
			list = front(list, condition{key: attrSrcTrustDomain, principal: trustDomainPrincipal}, s.GetTrustDomains(), s.GetNotTrustDomains())
			list = front(list, condition{key: attrSrcServiceAccount, principal: serviceAccountPrincipal(ns)}, s.GetServiceAccounts(), s.GetNotServiceAccounts())
			list = front(list, condition{key: attrRequestPrincipal, httpOnly: true, extendedPrincipal: requestPrincipals}, s.GetRequestPrincipals(), s.GetNotRequestPrincipals())
			list = front(list, condition{key: attrSrcPrincipal, principal: sourcePrincipal}, s.GetPrincipals(), s.GetNotPrincipals())
		}
		prinLists = append(prinLists, list)
	}
	for _, to := range rule.GetTo() {
		list := append([]condition(nil), basePerm...)
		if o := to.GetOperation(); o != nil {
			list = front(list, condition{key: attrDestPort, permission: destPortPermission}, o.GetPorts(), o.GetNotPorts())
			list = front(list, condition{key: "paths", httpOnly: true, permission: pathPermission}, o.GetPaths(), o.GetNotPaths())
			list = front(list, condition{key: ":method", httpOnly: true, permission: methodPermission}, o.GetMethods(), o.GetNotMethods())
			list = front(list, condition{key: ":authority", httpOnly: true, permission: hostPermission}, o.GetHosts(), o.GetNotHosts())
		}
		permLists = append(permLists, list)
	}
	// A rule without from (to) has one principal (permission): the when
	// conditions alone.
	if len(prinLists) == 0 {
		prinLists = [][]condition{basePrin}
	}
	if len(permLists) == 0 {
		permLists = [][]condition{basePerm}
	}
	principals, err := generateAll(principalTree{}, prinLists, forTCP, allow)
	if err != nil {
		return nil, err
	}
	permissions, err := generateAll(permissionTree{}, permLists, forTCP, allow)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Policy{Permissions: permissions, Principals: principals}, nil
}

// whenCondition returns the generator of a `when` key and whether it is a
// permission (destination side) rather than a principal.
func whenCondition(ns, key string) (condition, bool, error) {
	c := condition{key: key}
	switch {
	case key == attrDestIP:
		c.permission = destIPPermission
		return c, true, nil
	case key == attrDestPort:
		c.permission = destPortPermission
		return c, true, nil
	case key == attrConnSNI:
		c.permission = sniPermission
		return c, true, nil
	case key == attrSrcIP:
		c.principal = srcIPPrincipal
	case key == attrRemoteIP:
		c.principal = remoteIPPrincipal
	case key == attrSrcNamespace:
		c.principal = namespacePrincipal
	case key == attrSrcTrustDomain:
		c.principal = trustDomainPrincipal
	case key == attrSrcServiceAccount:
		c.principal = serviceAccountPrincipal(ns)
	case key == attrSrcPrincipal:
		c.principal = sourcePrincipal
	case key == attrRequestPrincipal:
		c.extendedPrincipal, c.httpOnly = requestPrincipals, true
	case key == attrRequestAudiences:
		c.extendedPrincipal, c.httpOnly = claimPrincipal("aud"), true
	case key == attrRequestPresenter:
		c.extendedPrincipal, c.httpOnly = claimPrincipal("azp"), true
	case strings.HasPrefix(key, attrRequestHeader):
		c.principal, c.httpOnly = headerPrincipal, true
	case strings.HasPrefix(key, attrRequestClaims):
		c.httpOnly = true
		claims, err := claimPath(strings.TrimPrefix(key, attrRequestClaims))
		if err != nil {
			return c, false, err
		}
		c.extendedPrincipal = claimPrincipal(claims...)
	default:
		return c, false, fmt.Errorf("unknown attribute %s", key)
	}
	return c, false, nil
}

// rbacTree builds one side of an RBAC policy, Permission or Principal:
// the two protos compose the same way, so one generator serves both.
type rbacTree[T any] interface {
	and([]T) T
	not(T) T
	anyRule() T
	// values is the matcher of one condition's values (ORed).
	values(c condition, vs []string) (T, error)
}

// generateAll generates one rule per condition list.
func generateAll[T any](tree rbacTree[T], lists [][]condition, forTCP, allow bool) ([]T, error) {
	out := make([]T, 0, len(lists))
	for _, list := range lists {
		r, err := generateRule(tree, list, forTCP, allow)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// generateRule is Istio's generatePermission/generatePrincipal: the
// conditions ANDed, each an OR of its values, notValues under a NOT; no
// condition matches anything.
func generateRule[T any](tree rbacTree[T], list []condition, forTCP, allow bool) (T, error) {
	var zero T
	var and []T
	for _, c := range list {
		if forTCP && c.httpOnly {
			if allow {
				return zero, fmt.Errorf("%q is HTTP only", c.key)
			}
			continue
		}
		for i, vals := range [][]string{c.values, c.notVals} {
			if len(vals) == 0 {
				continue
			}
			r, err := tree.values(c, vals)
			if err != nil {
				return zero, err
			}
			if i == 1 {
				r = tree.not(r)
			}
			and = append(and, r)
		}
	}
	if len(and) == 0 {
		and = append(and, tree.anyRule())
	}
	return tree.and(and), nil
}

// orEach ORs the matchers gen makes of each value.
func orEach[T any](c condition, vs []string, gen func(key, v string) (T, error), or func([]T) T) (T, error) {
	var zero T
	list := make([]T, 0, len(vs))
	for _, v := range vs {
		r, err := gen(c.key, v)
		if err != nil {
			return zero, err
		}
		list = append(list, r)
	}
	return or(list), nil
}

type permissionTree struct{}

func (permissionTree) and(rs []*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rs}}}
}

func (permissionTree) not(r *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: r}}
}

func (permissionTree) anyRule() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func (permissionTree) values(c condition, vs []string) (*rbacv3.Permission, error) {
	return orEach(c, vs, c.permission, func(rs []*rbacv3.Permission) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rs}}}
	})
}

type principalTree struct{}

func (principalTree) and(ids []*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func (principalTree) not(id *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
}

func (principalTree) anyRule() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func (principalTree) values(c condition, vs []string) (*rbacv3.Principal, error) {
	if c.extendedPrincipal != nil {
		return c.extendedPrincipal(c.key, vs)
	}
	return orEach(c, vs, c.principal, principalOr)
}

func principalOr(ids []*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

// ---- string matchers (Istio's authz/matcher) ----

func strRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func strPrefix(s string, ignoreCase bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ignoreCase, MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func strSuffix(s string, ignoreCase bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ignoreCase, MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
}

func strExact(s string, ignoreCase bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ignoreCase, MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// wildcardMatcher is Istio's StringMatcherWithPrefix: "*" any non-empty
// value, "*x" suffix, "x*" prefix, else exact; prefix is prepended.
func wildcardMatcher(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return strRegex(".+")
	case strings.HasPrefix(v, "*"):
		if prefix == "" {
			return strSuffix(v[1:], false)
		}
		return strRegex(prefix + ".*" + regexp.QuoteMeta(v[1:]))
	case strings.HasSuffix(v, "*"):
		return strPrefix(prefix+strings.TrimSuffix(v, "*"), false)
	}
	return strExact(prefix+v, false)
}

// headerMatcherFor is Istio's HeaderMatcher (hostIgnoreCase: HostMatcher).
func headerMatcherFor(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name}
	var sm *matcherv3.StringMatcher
	switch {
	case v == "*":
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm
	case strings.HasPrefix(v, "*"):
		sm = strSuffix(v[1:], ignoreCase)
	case strings.HasSuffix(v, "*"):
		sm = strPrefix(v[:len(v)-1], ignoreCase)
	default:
		sm = strExact(v, ignoreCase)
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	return hm
}

// jwtClaimMatcher is Istio's MetadataListValueMatcher for JWT claims: the
// claim (path under the payload) is a list with one matching element, or
// itself matches.
func jwtClaimMatcher(claims []string, value *matcherv3.ValueMatcher) *matcherv3.MetadataMatcher {
	path := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: jwtPayloadKey}}}
	for _, c := range claims {
		path = append(path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: c}})
	}
	list := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
		MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: value},
	}}}
	return &matcherv3.MetadataMatcher{
		Filter: jwtAuthnFilterName,
		Path:   path,
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{
			ValueMatchers: []*matcherv3.ValueMatcher{list, value},
		}}},
	}
}

// stringOrMatcher is Istio's StringOrMatcher: one value matcher, or an
// or_match of several.
func stringOrMatcher(vs []string) *matcherv3.ValueMatcher {
	var ms []*matcherv3.ValueMatcher
	for _, v := range vs {
		ms = append(ms, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: wildcardMatcher(v, "")}})
	}
	if len(ms) == 1 {
		return ms[0]
	}
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: ms}}}
}

// ---- generators ----

func cidrRange(v string) (*corev3.CidrRange, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return nil, fmt.Errorf("invalid IP address or CIDR %q", v)
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}, nil
}

func parsePort(v string) (uint32, error) {
	p, err := strconv.ParseUint(v, 10, 32)
	if err != nil || p > 65535 {
		return 0, fmt.Errorf("invalid port %q", v)
	}
	return uint32(p), nil
}

func destIPPermission(_, v string) (*rbacv3.Permission, error) {
	c, err := cidrRange(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: c}}, nil
}

func destPortPermission(_, v string) (*rbacv3.Permission, error) {
	p, err := parsePort(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: p}}, nil
}

func sniPermission(_, v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: wildcardMatcher(v, "")}}, nil
}

func hostPermission(_, v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcherFor(":authority", v, true)}}, nil
}

func methodPermission(_, v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcherFor(":method", v, false)}}, nil
}

func pathPermission(_, v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: wildcardMatcher(v, "")},
	}}}, nil
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func srcIPPrincipal(_, v string) (*rbacv3.Principal, error) {
	c, err := cidrRange(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}, nil
}

func remoteIPPrincipal(_, v string) (*rbacv3.Principal, error) {
	c, err := cidrRange(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}, nil
}

func namespacePrincipal(_, v string) (*rbacv3.Principal, error) {
	parts := strings.Split(v, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return authenticated(strRegex(".*/ns/" + strings.Join(parts, ".*") + "/.*")), nil
}

func trustDomainPrincipal(_, v string) (*rbacv3.Principal, error) {
	switch {
	case v == "*":
		return authenticated(strPrefix(spiffePrefix, false)), nil
	case !strings.Contains(v, "*"):
		return authenticated(strPrefix(spiffePrefix+v+"/", false)), nil
	}
	before, after, _ := strings.Cut(v, "*")
	return authenticated(strRegex(spiffePrefix + regexp.QuoteMeta(before) + "[^/]*" + regexp.QuoteMeta(after) + "/.*")), nil
}

func serviceAccountPrincipal(policyNS string) func(string, string) (*rbacv3.Principal, error) {
	return func(_, v string) (*rbacv3.Principal, error) {
		ns, sa, ok := strings.Cut(v, "/")
		if !ok {
			ns, sa = policyNS, v
		}
		return authenticated(strRegex(fmt.Sprintf("spiffe://.+/ns/%s/(.+/|)sa/%s(/.+)?", regexp.QuoteMeta(ns), regexp.QuoteMeta(sa)))), nil
	}
}

func sourcePrincipal(_, v string) (*rbacv3.Principal, error) {
	return authenticated(wildcardMatcher(v, spiffePrefix)), nil
}

func headerPrincipal(key, v string) (*rbacv3.Principal, error) {
	name, err := bracketName(strings.TrimPrefix(key, attrRequestHeader))
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: headerMatcherFor(name, v, false)}}, nil
}

func metadataPrincipal(m *matcherv3.MetadataMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: m}}
}

// requestPrincipals is Istio's request principal generator: "iss/sub"
// split at the last "/", each side matched against the iss and sub claims.
func requestPrincipals(_ string, values []string) (*rbacv3.Principal, error) {
	anyValue := strRegex(".+")
	var or []*rbacv3.Principal
	for _, v := range values {
		idx := strings.LastIndex(v, "/")
		found := idx >= 0
		iss, sub := v, ""
		if found {
			iss, sub = v[:idx], v[idx+1:]
		}
		var mIss, mSub *matcherv3.StringMatcher
		switch {
		case v == "*":
			mIss, mSub = anyValue, anyValue
		case strings.HasPrefix(v, "*"):
			if found {
				if iss == "*" {
					mIss = anyValue
				} else {
					mIss = strSuffix(strings.TrimPrefix(iss, "*"), false)
				}
				mSub = strExact(sub, false)
			} else {
				mIss, mSub = anyValue, strSuffix(strings.TrimPrefix(v, "*"), false)
			}
		case strings.HasSuffix(v, "*"):
			if found {
				mIss = strExact(iss, false)
				if sub == "*" {
					mSub = anyValue
				} else {
					mSub = strPrefix(strings.TrimSuffix(sub, "*"), false)
				}
			} else {
				mIss, mSub = strPrefix(strings.TrimSuffix(v, "*"), false), anyValue
			}
		default:
			mIss, mSub = strExact(iss, false), strExact(sub, false)
		}
		or = append(or, &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
			metadataPrincipal(claimStringMatcher("iss", mIss)),
			metadataPrincipal(claimStringMatcher("sub", mSub)),
		}}}})
	}
	if len(or) == 1 {
		return or[0], nil
	}
	return principalOr(or), nil
}

// claimStringMatcher matches a top-level claim as a string.
func claimStringMatcher(claim string, m *matcherv3.StringMatcher) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: jwtAuthnFilterName,
		Path: []*matcherv3.MetadataMatcher_PathSegment{
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: jwtPayloadKey}},
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: claim}},
		},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}},
	}
}

func claimPrincipal(claims ...string) func(string, []string) (*rbacv3.Principal, error) {
	return func(_ string, values []string) (*rbacv3.Principal, error) {
		return metadataPrincipal(jwtClaimMatcher(claims, stringOrMatcher(values))), nil
	}
}

// bracketName extracts NAME from "[NAME]".
func bracketName(s string) (string, error) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") || len(s) < 3 {
		return "", fmt.Errorf("expecting format [<NAME>], but found %s", s)
	}
	return s[1 : len(s)-1], nil
}

// claimPath parses "[a]" or "[a][b]" (nested claims), as Istio's
// extractNameInNestedBrackets.
func claimPath(s string) ([]string, error) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") || len(s) < 3 {
		return nil, fmt.Errorf("expecting format [<NAME>] or [<NAME>][<NAME>], but found %s", s)
	}
	inner := s[1 : len(s)-1]
	if !strings.Contains(inner, "[") && !strings.Contains(inner, "]") {
		return []string{inner}, nil
	}
	parts := strings.Split(inner, "][")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "[]") {
			// Istio reads the whole bracket content as one claim name.
			return []string{inner}, nil
		}
	}
	return parts, nil
}

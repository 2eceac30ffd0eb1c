package proxy

import (
	"fmt"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// rbacFilterName is Envoy's HTTP RBAC filter (wellknown.HTTPRoleBasedAccessControl).
const rbacFilterName = "envoy.filters.http.rbac"

// rbacAction is what a matching RBAC policy does.
type rbacAction int

const (
	rbacAllow rbacAction = iota
	rbacDeny
	rbacLog
)

// rbacFilter is a built envoy.extensions.filters.http.rbac.v3.RBAC. A
// filter without rules (only shadow_rules, which the proxy ignores)
// enforces nothing.
type rbacFilter struct {
	enforce  bool
	action   rbacAction
	policies []rbacPolicy // sorted by name, as Envoy's std::map iterates them
}

// rbacPolicy is one named policy: it matches when any permission and any
// principal match.
type rbacPolicy struct {
	name        string
	permissions []rbacRule
	principals  []rbacRule
}

// ruleKind is the kind of one RBAC matcher.
type ruleKind int

const (
	ruleAny ruleKind = iota
	ruleAnd
	ruleOr
	ruleNot
	ruleHeader
	ruleURLPath
	ruleMetadata
	ruleDestIP
	ruleDestPort
	ruleDestPortRange
	ruleSNI
	ruleAuthenticated
	ruleDirectRemoteIP // direct_remote_ip and the deprecated source_ip
	ruleRemoteIP
)

// rbacRule is a built rbac.v3.Permission or rbac.v3.Principal. As in
// Envoy (filters/common/rbac/matchers.h), both protos build into the same
// tree of matchers: and/or/not, header, url_path and metadata mean the
// same on either side; the other kinds come from one side only.
type rbacRule struct {
	kind     ruleKind
	children []rbacRule   // and, or, not (one)
	str      *stringMatch // url_path.path, requested_server_name, authenticated.principal_name (nil: any)
	header   *headerMatch
	metadata *metadataMatcher
	cidr     netip.Prefix
	port     uint32 // destination_port, or the range start
	portEnd  uint32 // range end (exclusive)
}

// buildRBAC validates an RBAC filter config. Fields the proxy does not
// implement are rejected with their path: the config must never be
// enforced partially.
func buildRBAC(a *anypb.Any) (*rbacFilter, *fieldError) {
	cfg := &rbacv3.RBAC{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding RBAC: %w", err)
	}
	// shadow_rules only feed Envoy's shadow stats and dynamic metadata:
	// accepted and not evaluated.
	if err := checkFields(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "rules_stat_prefix"); err != nil {
		return nil, &fieldError{err: err}
	}
	return buildRBACRules(cfg.GetRules())
}

// buildRBACRules builds the rules of an HTTP or network RBAC filter; nil
// rules enforce nothing.
func buildRBACRules(rules *rbacconfigv3.RBAC) (*rbacFilter, *fieldError) {
	f := &rbacFilter{}
	if rules == nil {
		return f, nil
	}
	f.enforce = true
	if err := checkFields(rules, "action", "policies"); err != nil {
		return nil, fieldErr(".rules", "%w", err)
	}
	switch rules.GetAction() {
	case rbacconfigv3.RBAC_ALLOW:
		f.action = rbacAllow
	case rbacconfigv3.RBAC_DENY:
		f.action = rbacDeny
	case rbacconfigv3.RBAC_LOG:
		f.action = rbacLog
	default:
		return nil, fieldErr(".rules.action", "%s: %w", rules.GetAction(), errUnsupported)
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for name := range rules.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := rules.GetPolicies()[name]
		field := ".rules.policies[" + name + "]"
		if err := checkFields(p, "permissions", "principals"); err != nil {
			return nil, fieldErr(field, "%w", err)
		}
		// Envoy's validation: both lists need at least one entry.
		if len(p.GetPermissions()) == 0 {
			return nil, fieldErr(field+".permissions", "empty")
		}
		if len(p.GetPrincipals()) == 0 {
			return nil, fieldErr(field+".principals", "empty")
		}
		perms, fe := buildRules(field+".permissions", p.GetPermissions(), buildPermission)
		if fe != nil {
			return nil, fe
		}
		prins, fe := buildRules(field+".principals", p.GetPrincipals(), buildPrincipal)
		if fe != nil {
			return nil, fe
		}
		f.policies = append(f.policies, rbacPolicy{name: name, permissions: perms, principals: prins})
	}
	return f, nil
}

// buildPermission builds a Permission. Its switch and buildPrincipal's
// differ only in the proto oneof they read; what both sides share is built
// by the same helpers.
func buildPermission(p *rbacconfigv3.Permission) (rbacRule, *fieldError) {
	switch r := p.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		return anyRule(r.Any)
	case *rbacconfigv3.Permission_AndRules:
		return setRule(ruleAnd, ".and_rules.rules", r.AndRules.GetRules(), buildPermission)
	case *rbacconfigv3.Permission_OrRules:
		return setRule(ruleOr, ".or_rules.rules", r.OrRules.GetRules(), buildPermission)
	case *rbacconfigv3.Permission_NotRule:
		return notRule(".not_rule", r.NotRule, buildPermission)
	case *rbacconfigv3.Permission_Header:
		return headerRule(r.Header)
	case *rbacconfigv3.Permission_UrlPath:
		return urlPathRule(r.UrlPath)
	case *rbacconfigv3.Permission_Metadata:
		return metadataRule(r.Metadata)
	case *rbacconfigv3.Permission_DestinationIp:
		return cidrRule(ruleDestIP, ".destination_ip", r.DestinationIp)
	case *rbacconfigv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return rbacRule{}, fieldErr(".destination_port", "%d: must be at most 65535", r.DestinationPort)
		}
		return rbacRule{kind: ruleDestPort, port: r.DestinationPort}, nil
	case *rbacconfigv3.Permission_DestinationPortRange:
		return rbacRule{kind: ruleDestPortRange, port: uint32(r.DestinationPortRange.GetStart()), portEnd: uint32(r.DestinationPortRange.GetEnd())}, nil
	case *rbacconfigv3.Permission_RequestedServerName:
		sm, err := buildStringMatch(r.RequestedServerName)
		if err != nil {
			return rbacRule{}, fieldErr(".requested_server_name", "%w", err)
		}
		return rbacRule{kind: ruleSNI, str: sm}, nil
	case nil:
		return rbacRule{}, fieldErr("", "missing rule")
	}
	return rbacRule{}, unsupportedOneof(p, "rule")
}

// buildPrincipal builds a Principal (see buildPermission).
func buildPrincipal(p *rbacconfigv3.Principal) (rbacRule, *fieldError) {
	switch id := p.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		return anyRule(id.Any)
	case *rbacconfigv3.Principal_AndIds:
		return setRule(ruleAnd, ".and_ids.ids", id.AndIds.GetIds(), buildPrincipal)
	case *rbacconfigv3.Principal_OrIds:
		return setRule(ruleOr, ".or_ids.ids", id.OrIds.GetIds(), buildPrincipal)
	case *rbacconfigv3.Principal_NotId:
		return notRule(".not_id", id.NotId, buildPrincipal)
	case *rbacconfigv3.Principal_Header:
		return headerRule(id.Header)
	case *rbacconfigv3.Principal_UrlPath:
		return urlPathRule(id.UrlPath)
	case *rbacconfigv3.Principal_Metadata:
		return metadataRule(id.Metadata)
	case *rbacconfigv3.Principal_DirectRemoteIp:
		return cidrRule(ruleDirectRemoteIP, ".direct_remote_ip", id.DirectRemoteIp)
	case *rbacconfigv3.Principal_SourceIp:
		return cidrRule(ruleDirectRemoteIP, ".source_ip", id.SourceIp)
	case *rbacconfigv3.Principal_RemoteIp:
		return cidrRule(ruleRemoteIP, ".remote_ip", id.RemoteIp)
	case *rbacconfigv3.Principal_Authenticated_:
		if err := checkFields(id.Authenticated, "principal_name"); err != nil {
			return rbacRule{}, fieldErr(".authenticated", "%w", err)
		}
		out := rbacRule{kind: ruleAuthenticated}
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			sm, err := buildStringMatch(pn)
			if err != nil {
				return rbacRule{}, fieldErr(".authenticated.principal_name", "%w", err)
			}
			out.str = sm
		}
		return out, nil
	case nil:
		return rbacRule{}, fieldErr("", "missing identifier")
	}
	return rbacRule{}, unsupportedOneof(p, "identifier")
}

// buildRules builds the elements of a repeated Permission or Principal
// field, prefixing an error with the element's path.
func buildRules[P any](field string, list []P, build func(P) (rbacRule, *fieldError)) ([]rbacRule, *fieldError) {
	out := make([]rbacRule, 0, len(list))
	for i, p := range list {
		r, fe := build(p)
		if fe != nil {
			fe.field = fmt.Sprintf("%s[%d]%s", field, i, fe.field)
			return nil, fe
		}
		out = append(out, r)
	}
	return out, nil
}

// setRule builds and_rules/or_rules or and_ids/or_ids: at least one
// element (Envoy's validation).
func setRule[P any](kind ruleKind, field string, list []P, build func(P) (rbacRule, *fieldError)) (rbacRule, *fieldError) {
	if len(list) == 0 {
		return rbacRule{}, fieldErr(field, "empty")
	}
	children, fe := buildRules(field, list, build)
	if fe != nil {
		return rbacRule{}, fe
	}
	return rbacRule{kind: kind, children: children}, nil
}

func notRule[P any](field string, p P, build func(P) (rbacRule, *fieldError)) (rbacRule, *fieldError) {
	child, fe := build(p)
	if fe != nil {
		fe.field = field + fe.field
		return rbacRule{}, fe
	}
	return rbacRule{kind: ruleNot, children: []rbacRule{child}}, nil
}

func anyRule(set bool) (rbacRule, *fieldError) {
	if !set {
		return rbacRule{}, fieldErr(".any", "must be true")
	}
	return rbacRule{kind: ruleAny}, nil
}

func headerRule(h *routev3.HeaderMatcher) (rbacRule, *fieldError) {
	hm, err := buildHeaderMatch(h)
	if err != nil {
		return rbacRule{}, fieldErr(".header", "%w", err)
	}
	return rbacRule{kind: ruleHeader, header: &hm}, nil
}

func urlPathRule(pm *matcherv3.PathMatcher) (rbacRule, *fieldError) {
	sm, fe := buildPathMatcher(pm)
	if fe != nil {
		fe.field = ".url_path" + fe.field
		return rbacRule{}, fe
	}
	return rbacRule{kind: ruleURLPath, str: sm}, nil
}

func metadataRule(mm *matcherv3.MetadataMatcher) (rbacRule, *fieldError) {
	m, fe := buildMetadataMatcher(mm)
	if fe != nil {
		fe.field = ".metadata" + fe.field
		return rbacRule{}, fe
	}
	return rbacRule{kind: ruleMetadata, metadata: m}, nil
}

func cidrRule(kind ruleKind, field string, c *corev3.CidrRange) (rbacRule, *fieldError) {
	p, err := buildCIDR(c)
	if err != nil {
		return rbacRule{}, fieldErr(field, "%w", err)
	}
	return rbacRule{kind: kind, cidr: p}, nil
}

// unsupportedOneof rejects a oneof case the proxy does not implement,
// naming it.
func unsupportedOneof(m proto.Message, oneof string) *fieldError {
	r := m.ProtoReflect()
	return fieldErr("", "%s %s: %w", oneof, r.WhichOneof(r.Descriptor().Oneofs().ByName(protoreflect.Name(oneof))).Name(), errUnsupported)
}

func buildPathMatcher(pm *matcherv3.PathMatcher) (*stringMatch, *fieldError) {
	if err := checkFields(pm, "path"); err != nil {
		return nil, &fieldError{err: err}
	}
	if pm.GetPath() == nil {
		return nil, fieldErr(".path", "missing")
	}
	sm, err := buildStringMatch(pm.GetPath())
	if err != nil {
		return nil, fieldErr(".path", "%w", err)
	}
	return sm, nil
}

// buildCIDR converts a CidrRange. As in Envoy, an unset prefix_len is 0
// (every address of the family).
func buildCIDR(c *corev3.CidrRange) (netip.Prefix, error) {
	if err := checkFields(c, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	addr, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address_prefix %q: not an IP address", c.GetAddressPrefix())
	}
	addr = addr.Unmap()
	bits := int(c.GetPrefixLen().GetValue())
	if bits > addr.BitLen() {
		return netip.Prefix{}, fmt.Errorf("prefix_len %d: more than %d bits", bits, addr.BitLen())
	}
	return addr.Prefix(bits)
}

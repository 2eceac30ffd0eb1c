package config

import (
	"fmt"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/match"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"net/netip"
	"slices"
)

// RBACFilterName is Envoy's HTTP RBAC filter (wellknown.HTTPRoleBasedAccessControl).
const RBACFilterName = "envoy.filters.http.rbac"

// BuildRBAC validates an RBAC filter config. Fields the proxy does not
// implement are rejected with their path: the config must never be
// enforced partially.
func BuildRBAC(a *anypb.Any) (*auth.RBACFilter, *fieldError) {
	cfg := &rbacv3.RBAC{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding RBAC: %w", err)
	}

	if err := checkFields(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "rules_stat_prefix"); err != nil {
		return nil, &fieldError{Err: err}
	}
	return buildRBACRules(cfg.GetRules())
}

// buildRBACRules builds the rules of an HTTP or network RBAC filter; nil
// rules enforce nothing.
func buildRBACRules(rules *rbacconfigv3.RBAC) (*auth.RBACFilter, *fieldError) {
	f := &auth.RBACFilter{}
	if rules == nil {
		return f, nil
	}
	f.Enforce = true
	if err := checkFields(rules, "action", "policies"); err != nil {
		return nil, fieldErr(".rules", "%w", err)
	}
	switch rules.GetAction() {
	case rbacconfigv3.RBAC_ALLOW:
		f.Action = auth.RBACAllow
	case rbacconfigv3.RBAC_DENY:
		f.Action = auth.RBACDeny
	case rbacconfigv3.RBAC_LOG:
		f.Action = auth.RBACLog
	default:
		return nil, fieldErr(".rules.action", "%s: %w", rules.GetAction(), ErrUnsupported)
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
		f.Policies = append(f.Policies, auth.RBACPolicy{Name: name, Permissions: perms, Principals: prins})
	}
	return f, nil
}

// buildPermission builds a Permission. Its switch and buildPrincipal's
// differ only in the proto oneof they read; what both sides share is built
// by the same helpers.
func buildPermission(p *rbacconfigv3.Permission) (auth.RBACRule, *fieldError) {
	switch r := p.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		return anyRule(r.Any)
	case *rbacconfigv3.Permission_AndRules:
		return setRule(auth.RuleAnd, ".and_rules.rules", r.AndRules.GetRules(), buildPermission)
	case *rbacconfigv3.Permission_OrRules:
		return setRule(auth.RuleOr, ".or_rules.rules", r.OrRules.GetRules(), buildPermission)
	case *rbacconfigv3.Permission_NotRule:
		return notRule(".not_rule", r.NotRule, buildPermission)
	case *rbacconfigv3.Permission_Header:
		return headerRule(r.Header)
	case *rbacconfigv3.Permission_UrlPath:
		return urlPathRule(r.UrlPath)
	case *rbacconfigv3.Permission_Metadata:
		return metadataRule(r.Metadata)
	case *rbacconfigv3.Permission_DestinationIp:
		return cidrRule(auth.RuleDestIP, ".destination_ip", r.DestinationIp)
	case *rbacconfigv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return auth.RBACRule{}, fieldErr(".destination_port", "%d: must be at most 65535", r.DestinationPort)
		}
		return auth.RBACRule{Kind: auth.RuleDestPort, Port: r.DestinationPort}, nil
	case *rbacconfigv3.Permission_DestinationPortRange:
		return auth.RBACRule{Kind: auth.RuleDestPortRange, Port: uint32(r.DestinationPortRange.GetStart()), PortEnd: uint32(r.DestinationPortRange.GetEnd())}, nil
	case *rbacconfigv3.Permission_RequestedServerName:
		sm, err := buildStringMatch(r.RequestedServerName)
		if err != nil {
			return auth.RBACRule{}, fieldErr(".requested_server_name", "%w", err)
		}
		return auth.RBACRule{Kind: auth.RuleSNI, Str: sm}, nil
	case nil:
		return auth.RBACRule{}, fieldErr("", "missing rule")
	}
	return auth.RBACRule{}, unsupportedOneof(p, "rule")
}

// buildPrincipal builds a Principal (see buildPermission).
func buildPrincipal(p *rbacconfigv3.Principal) (auth.RBACRule, *fieldError) {
	switch id := p.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		return anyRule(id.Any)
	case *rbacconfigv3.Principal_AndIds:
		return setRule(auth.RuleAnd, ".and_ids.ids", id.AndIds.GetIds(), buildPrincipal)
	case *rbacconfigv3.Principal_OrIds:
		return setRule(auth.RuleOr, ".or_ids.ids", id.OrIds.GetIds(), buildPrincipal)
	case *rbacconfigv3.Principal_NotId:
		return notRule(".not_id", id.NotId, buildPrincipal)
	case *rbacconfigv3.Principal_Header:
		return headerRule(id.Header)
	case *rbacconfigv3.Principal_UrlPath:
		return urlPathRule(id.UrlPath)
	case *rbacconfigv3.Principal_Metadata:
		return metadataRule(id.Metadata)
	case *rbacconfigv3.Principal_DirectRemoteIp:
		return cidrRule(auth.RuleDirectRemoteIP, ".direct_remote_ip", id.DirectRemoteIp)
	case *rbacconfigv3.Principal_SourceIp:
		return cidrRule(auth.RuleDirectRemoteIP, ".source_ip", id.SourceIp)
	case *rbacconfigv3.Principal_RemoteIp:
		return cidrRule(auth.RuleRemoteIP, ".remote_ip", id.RemoteIp)
	case *rbacconfigv3.Principal_Authenticated_:
		if err := checkFields(id.Authenticated, "principal_name"); err != nil {
			return auth.RBACRule{}, fieldErr(".authenticated", "%w", err)
		}
		out := auth.RBACRule{Kind: auth.RuleAuthenticated}
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			sm, err := buildStringMatch(pn)
			if err != nil {
				return auth.RBACRule{}, fieldErr(".authenticated.principal_name", "%w", err)
			}
			out.Str = sm
		}
		return out, nil
	case nil:
		return auth.RBACRule{}, fieldErr("", "missing identifier")
	}
	return auth.RBACRule{}, unsupportedOneof(p, "identifier")
}

// buildRules builds the elements of a repeated Permission or Principal
// field, prefixing an error with the element's path.
func buildRules[P any](field string, list []P, build func(P) (auth.RBACRule, *fieldError)) ([]auth.RBACRule, *fieldError) {
	out := make([]auth.RBACRule, 0, len(list))
	for i, p := range list {
		r, fe := build(p)
		if fe != nil {
			fe.Field = fmt.Sprintf("%s[%d]%s", field, i, fe.Field)
			return nil, fe
		}
		out = append(out, r)
	}
	return out, nil
}

// setRule builds and_rules/or_rules or and_ids/or_ids: at least one
// element (Envoy's validation).
func setRule[P any](kind auth.RuleKind, field string, list []P, build func(P) (auth.RBACRule, *fieldError)) (auth.RBACRule, *fieldError) {
	if len(list) == 0 {
		return auth.RBACRule{}, fieldErr(field, "empty")
	}
	children, fe := buildRules(field, list, build)
	if fe != nil {
		return auth.RBACRule{}, fe
	}
	return auth.RBACRule{Kind: kind, Children: children}, nil
}

func notRule[P any](field string, p P, build func(P) (auth.RBACRule, *fieldError)) (auth.RBACRule, *fieldError) {
	child, fe := build(p)
	if fe != nil {
		fe.Field = field + fe.Field
		return auth.RBACRule{}, fe
	}
	return auth.RBACRule{Kind: auth.RuleNot, Children: []auth.RBACRule{child}}, nil
}

func anyRule(set bool) (auth.RBACRule, *fieldError) {
	if !set {
		return auth.RBACRule{}, fieldErr(".any", "must be true")
	}
	return auth.RBACRule{Kind: auth.RuleAny}, nil
}

func headerRule(h *routev3.HeaderMatcher) (auth.RBACRule, *fieldError) {
	hm, err := BuildHeaderMatch(h)
	if err != nil {
		return auth.RBACRule{}, fieldErr(".header", "%w", err)
	}
	return auth.RBACRule{Kind: auth.RuleHeader, Header: &hm}, nil
}

func urlPathRule(pm *matcherv3.PathMatcher) (auth.RBACRule, *fieldError) {
	sm, fe := buildPathMatcher(pm)
	if fe != nil {
		fe.Field = ".url_path" + fe.Field
		return auth.RBACRule{}, fe
	}
	return auth.RBACRule{Kind: auth.RuleURLPath, Str: sm}, nil
}

func metadataRule(mm *matcherv3.MetadataMatcher) (auth.RBACRule, *fieldError) {
	m, fe := buildMetadataMatcher(mm)
	if fe != nil {
		fe.Field = ".metadata" + fe.Field
		return auth.RBACRule{}, fe
	}
	return auth.RBACRule{Kind: auth.RuleMetadata, Metadata: m}, nil
}

func cidrRule(kind auth.RuleKind, field string, c *corev3.CidrRange) (auth.RBACRule, *fieldError) {
	p, err := buildCIDR(c)
	if err != nil {
		return auth.RBACRule{}, fieldErr(field, "%w", err)
	}
	return auth.RBACRule{Kind: kind, CIDR: p}, nil
}

// unsupportedOneof rejects a oneof case the proxy does not implement,
// naming it.
func unsupportedOneof(m proto.Message, oneof string) *fieldError {
	r := m.ProtoReflect()
	return fieldErr("", "%s %s: %w", oneof, r.WhichOneof(r.Descriptor().Oneofs().ByName(protoreflect.Name(oneof))).Name(), ErrUnsupported)
}

func buildPathMatcher(pm *matcherv3.PathMatcher) (*match.StringMatch, *fieldError) {
	if err := checkFields(pm, "path"); err != nil {
		return nil, &fieldError{Err: err}
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

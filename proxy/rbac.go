package proxy

import (
	"fmt"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
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
	permissions []permission
	principals  []principal
}

type permKind int

const (
	permAny permKind = iota
	permAnd
	permOr
	permNot
	permHeader
	permURLPath
	permDestIP
	permDestPort
	permDestPortRange
	permMetadata
	permSNI
)

// permission is a built rbac.v3.Permission.
type permission struct {
	kind     permKind
	children []permission // and_rules, or_rules, not_rule (one)
	header   *headerMatch
	str      *stringMatch // url_path.path, requested_server_name
	cidr     netip.Prefix
	port     uint32 // destination_port, or the range start
	portEnd  uint32 // range end (exclusive)
	metadata *metadataMatcher
}

type principalKind int

const (
	prinAny principalKind = iota
	prinAnd
	prinOr
	prinNot
	prinAuthenticated
	prinDirectRemoteIP
	prinRemoteIP
	prinSourceIP
	prinHeader
	prinURLPath
	prinMetadata
)

// principal is a built rbac.v3.Principal.
type principal struct {
	kind     principalKind
	children []principal
	str      *stringMatch // authenticated.principal_name (nil: any), url_path
	cidr     netip.Prefix
	header   *headerMatch
	metadata *metadataMatcher
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
		pol := rbacPolicy{name: name}
		for i, pm := range p.GetPermissions() {
			b, fe := buildPermission(pm)
			if fe != nil {
				fe.field = fmt.Sprintf("%s.permissions[%d]%s", field, i, fe.field)
				return nil, fe
			}
			pol.permissions = append(pol.permissions, b)
		}
		for i, pr := range p.GetPrincipals() {
			b, fe := buildPrincipal(pr)
			if fe != nil {
				fe.field = fmt.Sprintf("%s.principals[%d]%s", field, i, fe.field)
				return nil, fe
			}
			pol.principals = append(pol.principals, b)
		}
		f.policies = append(f.policies, pol)
	}
	return f, nil
}

func buildPermission(p *rbacconfigv3.Permission) (permission, *fieldError) {
	var out permission
	switch r := p.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		if !r.Any {
			return out, fieldErr(".any", "must be true")
		}
		out.kind = permAny
	case *rbacconfigv3.Permission_AndRules:
		out.kind = permAnd
		return buildPermissionSet(out, ".and_rules", r.AndRules)
	case *rbacconfigv3.Permission_OrRules:
		out.kind = permOr
		return buildPermissionSet(out, ".or_rules", r.OrRules)
	case *rbacconfigv3.Permission_NotRule:
		child, fe := buildPermission(r.NotRule)
		if fe != nil {
			fe.field = ".not_rule" + fe.field
			return out, fe
		}
		out.kind, out.children = permNot, []permission{child}
	case *rbacconfigv3.Permission_Header:
		hm, err := buildHeaderMatch(r.Header)
		if err != nil {
			return out, fieldErr(".header", "%w", err)
		}
		out.kind, out.header = permHeader, &hm
	case *rbacconfigv3.Permission_UrlPath:
		sm, fe := buildPathMatcher(r.UrlPath)
		if fe != nil {
			fe.field = ".url_path" + fe.field
			return out, fe
		}
		out.kind, out.str = permURLPath, sm
	case *rbacconfigv3.Permission_DestinationIp:
		c, err := buildCIDR(r.DestinationIp)
		if err != nil {
			return out, fieldErr(".destination_ip", "%w", err)
		}
		out.kind, out.cidr = permDestIP, c
	case *rbacconfigv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return out, fieldErr(".destination_port", "%d: must be at most 65535", r.DestinationPort)
		}
		out.kind, out.port = permDestPort, r.DestinationPort
	case *rbacconfigv3.Permission_DestinationPortRange:
		out.kind = permDestPortRange
		out.port, out.portEnd = uint32(r.DestinationPortRange.GetStart()), uint32(r.DestinationPortRange.GetEnd())
	case *rbacconfigv3.Permission_Metadata:
		mm, fe := buildMetadataMatcher(r.Metadata)
		if fe != nil {
			fe.field = ".metadata" + fe.field
			return out, fe
		}
		out.kind, out.metadata = permMetadata, mm
	case *rbacconfigv3.Permission_RequestedServerName:
		sm, err := buildStringMatch(r.RequestedServerName)
		if err != nil {
			return out, fieldErr(".requested_server_name", "%w", err)
		}
		out.kind, out.str = permSNI, sm
	case nil:
		return out, fieldErr("", "missing rule")
	default:
		return out, fieldErr("", "rule %s: %w", p.ProtoReflect().WhichOneof(p.ProtoReflect().Descriptor().Oneofs().ByName("rule")).Name(), errUnsupported)
	}
	return out, nil
}

func buildPermissionSet(out permission, field string, set *rbacconfigv3.Permission_Set) (permission, *fieldError) {
	if len(set.GetRules()) == 0 {
		return out, fieldErr(field+".rules", "empty")
	}
	for i, c := range set.GetRules() {
		child, fe := buildPermission(c)
		if fe != nil {
			fe.field = fmt.Sprintf("%s.rules[%d]%s", field, i, fe.field)
			return out, fe
		}
		out.children = append(out.children, child)
	}
	return out, nil
}

func buildPrincipal(p *rbacconfigv3.Principal) (principal, *fieldError) {
	var out principal
	switch id := p.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		if !id.Any {
			return out, fieldErr(".any", "must be true")
		}
		out.kind = prinAny
	case *rbacconfigv3.Principal_AndIds:
		out.kind = prinAnd
		return buildPrincipalSet(out, ".and_ids", id.AndIds)
	case *rbacconfigv3.Principal_OrIds:
		out.kind = prinOr
		return buildPrincipalSet(out, ".or_ids", id.OrIds)
	case *rbacconfigv3.Principal_NotId:
		child, fe := buildPrincipal(id.NotId)
		if fe != nil {
			fe.field = ".not_id" + fe.field
			return out, fe
		}
		out.kind, out.children = prinNot, []principal{child}
	case *rbacconfigv3.Principal_Authenticated_:
		if err := checkFields(id.Authenticated, "principal_name"); err != nil {
			return out, fieldErr(".authenticated", "%w", err)
		}
		out.kind = prinAuthenticated
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			sm, err := buildStringMatch(pn)
			if err != nil {
				return out, fieldErr(".authenticated.principal_name", "%w", err)
			}
			out.str = sm
		}
	case *rbacconfigv3.Principal_DirectRemoteIp:
		c, err := buildCIDR(id.DirectRemoteIp)
		if err != nil {
			return out, fieldErr(".direct_remote_ip", "%w", err)
		}
		out.kind, out.cidr = prinDirectRemoteIP, c
	case *rbacconfigv3.Principal_RemoteIp:
		c, err := buildCIDR(id.RemoteIp)
		if err != nil {
			return out, fieldErr(".remote_ip", "%w", err)
		}
		out.kind, out.cidr = prinRemoteIP, c
	case *rbacconfigv3.Principal_SourceIp:
		c, err := buildCIDR(id.SourceIp)
		if err != nil {
			return out, fieldErr(".source_ip", "%w", err)
		}
		out.kind, out.cidr = prinSourceIP, c
	case *rbacconfigv3.Principal_Header:
		hm, err := buildHeaderMatch(id.Header)
		if err != nil {
			return out, fieldErr(".header", "%w", err)
		}
		out.kind, out.header = prinHeader, &hm
	case *rbacconfigv3.Principal_UrlPath:
		sm, fe := buildPathMatcher(id.UrlPath)
		if fe != nil {
			fe.field = ".url_path" + fe.field
			return out, fe
		}
		out.kind, out.str = prinURLPath, sm
	case *rbacconfigv3.Principal_Metadata:
		mm, fe := buildMetadataMatcher(id.Metadata)
		if fe != nil {
			fe.field = ".metadata" + fe.field
			return out, fe
		}
		out.kind, out.metadata = prinMetadata, mm
	case nil:
		return out, fieldErr("", "missing identifier")
	default:
		return out, fieldErr("", "identifier %s: %w", p.ProtoReflect().WhichOneof(p.ProtoReflect().Descriptor().Oneofs().ByName("identifier")).Name(), errUnsupported)
	}
	return out, nil
}

func buildPrincipalSet(out principal, field string, set *rbacconfigv3.Principal_Set) (principal, *fieldError) {
	if len(set.GetIds()) == 0 {
		return out, fieldErr(field+".ids", "empty")
	}
	for i, c := range set.GetIds() {
		child, fe := buildPrincipal(c)
		if fe != nil {
			fe.field = fmt.Sprintf("%s.ids[%d]%s", field, i, fe.field)
			return out, fe
		}
		out.children = append(out.children, child)
	}
	return out, nil
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

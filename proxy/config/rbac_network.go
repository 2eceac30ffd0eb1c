package config

import (
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"google.golang.org/protobuf/types/known/anypb"
)

// RBACNetworkFilterName is Envoy's network (L4) RBAC filter, which Istio
// puts before tcp_proxy on TCP filter chains.
const RBACNetworkFilterName = "envoy.filters.network.rbac"

// buildNetworkRBAC validates a network RBAC config: rules as the HTTP
// filter's, enforcement ONE_TIME_ON_FIRST_BYTE (the default; the decision
// is taken once per connection).
func buildNetworkRBAC(a *anypb.Any) (*auth.NetworkRBAC, *fieldError) {
	cfg := &rbacnetv3.RBAC{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding network RBAC: %w", err)
	}
	if err := checkFields(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix", "enforcement_type"); err != nil {
		return nil, &fieldError{Err: err}
	}
	if cfg.GetEnforcementType() != rbacnetv3.RBAC_ONE_TIME_ON_FIRST_BYTE {
		return nil, fieldErr(".enforcement_type", "%s: %w", cfg.GetEnforcementType(), ErrUnsupported)
	}
	if cfg.GetStatPrefix() == "" {

		return nil, fieldErr(".stat_prefix", "empty")
	}
	rules, fe := buildRBACRules(cfg.GetRules())
	if fe != nil {
		fe.Field = ".rules" + fe.Field
		return nil, fe
	}
	return &auth.NetworkRBAC{StatPrefix: cfg.GetStatPrefix(), Rules: rules}, nil
}

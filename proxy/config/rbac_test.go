package config_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
)

func TestRBACRejectsUnsupported(t *testing.T) {
	tests := []struct {
		name, field string
		cfg         *rbacv3.RBAC
	}{
		{"principal filter_state", ".rules.policies[p].principals[0]", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAny()}, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_FilterState{FilterState: &matcherv3.FilterStateMatcher{Key: "k"}}})})},
		{"permission uri_template", ".rules.policies[p].permissions[0]", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{Name: "t"}}}}, prototest.IDAny())})},
		{"empty principals", ".rules.policies[p].principals", prototest.RBACConfig(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
			"p": prototest.Policy([]*rbacconfigv3.Permission{prototest.PAny()})})},
		{"track_per_rule_stats", "", &rbacv3.RBAC{RulesStatPrefix: "x", TrackPerRuleStats: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fe := config.BuildRBAC(prototest.Any(t, tt.cfg))
			if fe == nil {
				t.Fatalf("built; want an error at %q", tt.field)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q (%v); want %q", fe.Field, fe.Err, tt.field)
			}
		})
	}
}

package config_test

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
)

func TestNetworkRBACOnlyBeforeTCPProxy(t *testing.T) {
	l := prototest.HCMListener(t, "inbound", "127.0.0.1:1", "inbound")
	fc := l.FilterChains[0]
	fc.Filters = append([]*listenerv3.Filter{{
		Name:       config.RBACNetworkFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: prototest.Any(t, &rbacnetv3.RBAC{StatPrefix: "tcp."})},
	}}, fc.Filters...)
	_, _, fe := config.BuildFilterChain(fc, nil, config.NewClusterRefs(nil))
	if fe == nil || fe.Field != ".filters[1]" {
		t.Fatalf("got %+v; want an error at .filters[1]", fe)
	}
}

package compiler

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// applySecurity puts the jwt_authn and RBAC filters of the
// RequestAuthentications and AuthorizationPolicies that apply to the
// class at the head of the HTTP filters of the connection managers that
// receive its traffic: a sidecar's inbound listeners, every listener of a
// gateway. Order (Istio's): jwt_authn, RBAC AUDIT (action LOG), RBAC
// DENY, RBAC ALLOW, then the existing filters and the router.
func (b *builder) applySecurity(res *resources) error {
	if b.class.Generator == nodemeta.GeneratorGRPC {
		return nil
	}
	gateway := b.class.Role == nodemeta.RoleGateway
	var filters []*hcmv3.HttpFilter
	if jwt := b.p.jwtFilter(b.namespace, b.class.Labels, gateway); jwt != nil {
		a, err := marshalAny(jwt)
		if err != nil {
			return err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: jwtAuthnFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	for _, rules := range b.p.authzFilters(b.namespace, b.class.Labels) {
		a, err := marshalAny(&rbacfilterv3.RBAC{Rules: rules})
		if err != nil {
			return err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	if len(filters) == 0 {
		return nil
	}
	for _, l := range res.listeners {
		if !gateway && l.GetTrafficDirection() != corev3.TrafficDirection_INBOUND {
			continue
		}
		if err := prependHTTPFilters(l, filters); err != nil {
			return fmt.Errorf("adding authorization filters to listener %s: %w", l.GetName(), err)
		}
	}
	return nil
}

// prependHTTPFilters puts filters first in every HTTP connection manager
// of l's filter chains.
func prependHTTPFilters(l *listenerv3.Listener, filters []*hcmv3.HttpFilter) error {
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager || f.GetTypedConfig() == nil {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return fmt.Errorf("decoding HttpConnectionManager: %w", err)
			}
			hcm.HttpFilters = append(append([]*hcmv3.HttpFilter{}, filters...), hcm.HttpFilters...)
			a, err := marshalAny(hcm)
			if err != nil {
				return err
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return nil
}

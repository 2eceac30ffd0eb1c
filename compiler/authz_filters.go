package compiler

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// applySecurity puts the jwt_authn and RBAC filters of the
// RequestAuthentications and AuthorizationPolicies that apply to the
// class at the head of the filter chains that receive its traffic: a
// sidecar's inbound listeners, every listener of a gateway. HTTP
// connection managers get, in Istio's order, jwt_authn, RBAC AUDIT (action
// LOG), RBAC DENY, RBAC ALLOW before their own filters; TCP chains
// (tcp_proxy) get the network RBAC filters (stat_prefix "tcp.", rules
// built for TCP) before the tcp_proxy.
func (b *builder) applySecurity(res *resources) error {
	if b.class.Generator == nodemeta.GeneratorGRPC {
		return nil
	}
	gateway := b.class.Role == nodemeta.RoleGateway
	var httpFilters []*hcmv3.HttpFilter
	if jwt := b.p.jwtFilter(b.namespace, b.class.Labels, gateway); jwt != nil {
		a, err := marshalAny(jwt)
		if err != nil {
			return err
		}
		httpFilters = append(httpFilters, &hcmv3.HttpFilter{Name: jwtAuthnFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	for _, rules := range b.p.authzFilters(b.namespace, b.class.Labels, false) {
		a, err := marshalAny(&rbacfilterv3.RBAC{Rules: rules})
		if err != nil {
			return err
		}
		httpFilters = append(httpFilters, &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	var tcpFilters []*listenerv3.Filter
	for _, rules := range b.p.authzFilters(b.namespace, b.class.Labels, true) {
		a, err := marshalAny(&rbacnetv3.RBAC{StatPrefix: "tcp.", Rules: rules})
		if err != nil {
			return err
		}
		tcpFilters = append(tcpFilters, &listenerv3.Filter{Name: rbacNetworkFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}})
	}
	if len(httpFilters) == 0 && len(tcpFilters) == 0 {
		return nil
	}
	for _, l := range res.listeners {
		if !gateway && l.GetTrafficDirection() != corev3.TrafficDirection_INBOUND {
			continue
		}
		if err := prependFilters(l, httpFilters, tcpFilters); err != nil {
			return fmt.Errorf("adding authorization filters to listener %s: %w", l.GetName(), err)
		}
	}
	return nil
}

// rbacNetworkFilterName is Envoy's network RBAC filter.
const rbacNetworkFilterName = "envoy.filters.network.rbac"

// prependFilters puts httpFilters first in every HTTP connection manager
// of l's filter chains, and tcpFilters before every tcp_proxy.
func prependFilters(l *listenerv3.Listener, httpFilters []*hcmv3.HttpFilter, tcpFilters []*listenerv3.Filter) error {
	for _, fc := range listenerChains(l) {
		if len(tcpFilters) > 0 && len(fc.GetFilters()) > 0 && fc.GetFilters()[len(fc.GetFilters())-1].GetName() == wellknown.TCPProxy {
			fc.Filters = append(append([]*listenerv3.Filter{}, tcpFilters...), fc.Filters...)
			continue
		}
		if len(httpFilters) == 0 {
			continue
		}
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager || f.GetTypedConfig() == nil {
				continue
			}
			err := editHCM(f, func(hcm *hcmv3.HttpConnectionManager) {
				hcm.HttpFilters = append(append([]*hcmv3.HttpFilter{}, httpFilters...), hcm.HttpFilters...)
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// listenerChains returns l's filter chains and its default filter chain,
// if any.
func listenerChains(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	return chains
}

// editHCM applies edit to the HTTP connection manager filter f, decoding
// and re-encoding its typed config.
func editHCM(f *listenerv3.Filter, edit func(*hcmv3.HttpConnectionManager)) error {
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		return fmt.Errorf("decoding HttpConnectionManager: %w", err)
	}
	edit(hcm)
	a, err := marshalAny(hcm)
	if err != nil {
		return err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return nil
}

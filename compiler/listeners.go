package compiler

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// Listener and RouteConfiguration names of a sidecar (docs/xds-conventions.md).
const (
	outboundName = "outbound"
	inboundName  = "inbound"
)

// httpListener returns a listener named name on addr whose one filter chain
// is an HTTP connection manager reading RouteConfiguration name over ADS.
func httpListener(name, addr string, direction corev3.TrafficDirection) (*listenerv3.Listener, error) {
	hp, err := splitIPPort(addr)
	if err != nil {
		return nil, fmt.Errorf("building listener %s: %w", name, err)
	}
	hcm, err := httpConnectionManager(name, name)
	if err != nil {
		return nil, fmt.Errorf("building listener %s: %w", name, err)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(hp.Host, hp.Port),
		TrafficDirection: direction,
		FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm}}},
	}, nil
}

// httpConnectionManager returns the HTTP connection manager network filter
// reading RouteConfiguration route over ADS, with Istio's HTTP filters:
// fault and CORS (which routes configure through typed_per_filter_config;
// they do nothing otherwise), then the router.
func httpConnectionManager(statPrefix, route string) (*listenerv3.Filter, error) {
	var filters []*hcmv3.HttpFilter
	for _, f := range []struct {
		name string
		cfg  proto.Message
	}{
		{faultFilterName, &faultv3.HTTPFault{}},
		{corsFilterName, &corsv3.Cors{}},
		{wellknown.Router, &routerv3.Router{}},
	} {
		a, err := marshalAny(f.cfg)
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	hcm, err := marshalAny(&hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: route,
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}, nil
}

// adsConfigSource is the ConfigSource of every dynamic resource: ADS.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// splitIPPort parses a node address (host:port) whose host must be an IP
// literal, which the proxy requires of listeners and STATIC/EDS endpoints.
// "localhost" means 127.0.0.1.
func splitIPPort(addr string) (nodemeta.HostPort, error) {
	hp, err := nodemeta.SplitHostPort(addr)
	if err != nil {
		return hp, err
	}
	if hp.Host == "localhost" {
		hp.Host = "127.0.0.1"
	}
	if !isIP(hp.Host) {
		return hp, fmt.Errorf("address %q: host must be an IP address", addr)
	}
	return hp, nil
}

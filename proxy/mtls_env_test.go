package proxy

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/gitmesh/gitmesh/proxy/config"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ---- a test CA and SPIFFE workload certificates ----

// ---- SDS secrets and transport sockets as docs/xds-conventions.md ("mTLS") writes them ----

// inboundListener is a sidecar's inbound listener for a PeerAuthentication
// mode (STRICT, PERMISSIVE, DISABLE) as docs/xds-conventions.md writes it, routing
// with RDS routeName.
func inboundListener(t testing.TB, addr, mode, routeName string) *listenerv3.Listener {
	hcm := func(tlsChain bool) *listenerv3.Filter {
		h := &hcmv3.HttpConnectionManager{
			StatPrefix: "inbound",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
				RouteConfigName: routeName,
			}},
			HttpFilters:              []*hcmv3.HttpFilter{{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}}},
			ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
		}
		if tlsChain {
			h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
			h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
		}
		return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, h)}}
	}
	tlsChain := &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters:          []*listenerv3.Filter{hcm(true)},
		TransportSocket: &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("default")},
				ValidationContextType:          meshValidation(),
				AlpnProtocols:                  []string{"h2", "http/1.1"},
			},
		})}},
	}
	plainChain := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcm(false)}}
	l := &listenerv3.Listener{
		Name:             "inbound",
		Address:          socketAddr(t, addr),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{
			TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{}),
		}}},
	}
	switch mode {
	case "STRICT":
		l.FilterChains = []*listenerv3.FilterChain{tlsChain}
	case "PERMISSIVE":
		plainChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
		l.FilterChains = []*listenerv3.FilterChain{tlsChain, plainChain}
	default:
		l.FilterChains = []*listenerv3.FilterChain{plainChain}
	}
	return l
}

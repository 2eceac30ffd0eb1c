package compiler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// This file builds a gateway proxy's listeners and routes from the
// Gateways that select it (docs/xds-conventions.md, "Gateway"): one
// listener per server port the proxy has an address for (GATEWAY_ADDRS,
// matched by port), named "<ip>_<port>"; plain HTTP servers share the
// RouteConfiguration "http.<port>", each HTTPS server has its own
// "https.<port>.<port name>.<gateway>.<namespace>" and filter chain.

// gatewayListeners adds the listeners and RouteConfigurations of a gateway
// proxy.
func (b *builder) gatewayListeners(res *resources) error {
	addrs := map[uint32]nodemeta.HostPort{}
	for _, a := range b.class.Gateway {
		hp, err := splitIPPort(a)
		if err != nil {
			return fmt.Errorf("building gateway listeners: %w", err)
		}
		if _, ok := addrs[hp.Port]; !ok {
			addrs[hp.Port] = hp
		}
	}
	byPort := map[uint32][]*gatewayServer{}
	var ports []uint32
	for _, gw := range b.p.gatewayList {
		if !labelsMatch(gw.selector, b.class.Labels) {
			continue
		}
		for _, srv := range gw.servers {
			if _, ok := addrs[srv.port]; !ok {
				continue // the proxy does not listen on this port
			}
			if len(byPort[srv.port]) == 0 {
				ports = append(ports, srv.port)
			} else if byPort[srv.port][0].plain() != srv.plain() {
				continue // another protocol already claimed the port (first wins)
			}
			byPort[srv.port] = append(byPort[srv.port], srv)
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, port := range ports {
		hp, servers := addrs[port], byPort[port]
		name := hp.Host + "_" + strconv.FormatUint(uint64(port), 10)
		l := &listenerv3.Listener{
			Name:             name,
			Address:          socketAddress(hp.Host, port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		}
		if servers[0].plain() {
			rcName := "http." + strconv.FormatUint(uint64(port), 10)
			hcm, err := httpConnectionManager("outbound_"+name, rcName)
			if err != nil {
				return fmt.Errorf("building listener %s: %w", name, err)
			}
			l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm}}}
			res.routes = append(res.routes, b.gatewayRoutes(rcName, port, servers, false))
		} else {
			if len(servers) > 1 {
				// SNI selects the filter chain: Envoy needs the TLS inspector.
				inspector, err := marshalAny(&tlsinspectorv3.TlsInspector{})
				if err != nil {
					return fmt.Errorf("building listener %s: %w", name, err)
				}
				l.ListenerFilters = []*listenerv3.ListenerFilter{{
					Name:       wellknown.TlsInspector,
					ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector},
				}}
			}
			chains := map[string]bool{} // SNI sets already matched: Envoy rejects two equal filter chain matches
			for _, srv := range servers {
				if sni := sniKey(srv); chains[sni] {
					continue // overlapping but not identical hosts ("ns1/*", "ns2/*"): the first server wins
				} else {
					chains[sni] = true
				}
				rcName := fmt.Sprintf("https.%d.%s.%s.%s", port, srv.portName, srv.gw.obj.Name, srv.gw.obj.Namespace)
				fc, err := b.httpsFilterChain(srv, rcName, "outbound_"+name, len(servers) > 1)
				if err != nil {
					return fmt.Errorf("building listener %s: %w", name, err)
				}
				l.FilterChains = append(l.FilterChains, fc)
				res.routes = append(res.routes, b.gatewayRoutes(rcName, port, []*gatewayServer{srv}, true))
			}
		}
		res.listeners = append(res.listeners, l)
	}
	return nil
}

// gatewayRoutes returns a gateway RouteConfiguration: for each server, the
// routes of every VirtualService bound to its Gateway (and exported to the
// proxy's namespace), one VirtualHost per host the server accepts, named
// "<host>:<port>" with domains host and host:* (routes of several
// VirtualServices for one host are concatenated in namespace/name order,
// as Istio merges them on gateways). httpsRedirect servers require TLS.
// Without any VirtualHost, a block_all one answers 404.
func (b *builder) gatewayRoutes(name string, port uint32, servers []*gatewayServer, tls bool) *routev3.RouteConfiguration {
	vhosts := map[string]*routev3.VirtualHost{}
	vhost := func(host string) *routev3.VirtualHost {
		if vh, ok := vhosts[host]; ok {
			return vh
		}
		vh := &routev3.VirtualHost{Name: host + ":" + strconv.FormatUint(uint64(port), 10), Domains: gatewayDomains(host, port)}
		vhosts[host] = vh
		return vh
	}
	done := map[string]bool{}
	for _, srv := range servers {
		for _, v := range b.p.virtualServices {
			if !containsString(v.gateways, srv.gw.key) || !v.export.visibleTo(b.namespace) {
				continue
			}
			for _, h := range v.hosts {
				host := serverHostFor(srv, v.obj.Namespace, h)
				key := v.obj.Namespace + "/" + v.obj.Name + "|" + host + "|" + srv.gw.key
				if host == "" || done[key] {
					continue
				}
				done[key] = true
				routes := b.translateHTTPRoutes(v.http, routeCtx{port: port, gateway: srv.gw.key, tls: tls})
				if len(routes) > 0 {
					vh := vhost(host)
					vh.Routes = append(vh.Routes, routes...)
				}
			}
		}
		if srv.httpsRedirect {
			for _, f := range srv.hosts {
				vhost(f.host).RequireTls = routev3.VirtualHost_ALL
			}
		}
	}
	rc := &routev3.RouteConfiguration{Name: name}
	for _, host := range sortedKeys(vhosts) {
		rc.VirtualHosts = append(rc.VirtualHosts, vhosts[host])
	}
	sort.SliceStable(rc.VirtualHosts, func(i, j int) bool { return rc.VirtualHosts[i].GetName() < rc.VirtualHosts[j].GetName() })
	if len(rc.VirtualHosts) == 0 {
		rc.VirtualHosts = []*routev3.VirtualHost{{Name: blackHoleName, Domains: []string{"*"}}}
	}
	return rc
}

// gatewayDomains are a gateway VirtualHost's domains: the host, and the
// host with any port ("host:*", as Istio), or for a wildcard host the host
// with the server port (Envoy allows one wildcard per domain); "*" alone.
func gatewayDomains(host string, port uint32) []string {
	switch {
	case host == "*":
		return []string{"*"}
	case isWildcardHost(host):
		return []string{host, host + ":" + strconv.FormatUint(uint64(port), 10)}
	}
	return []string{host, host + ":*"}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sniKey is the set of SNI names an HTTPS server's filter chain matches,
// as one string ("" matches any name).
func sniKey(srv *gatewayServer) string {
	var names []string
	for _, f := range srv.hosts {
		if f.host != "*" {
			names = append(names, f.host)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// httpsFilterChain returns the filter chain of an HTTPS server: TLS
// termination with the server's certificate files, then the HTTP
// connection manager. With several HTTPS servers on one port, each chain
// matches the SNI names of its hosts.
func (b *builder) httpsFilterChain(srv *gatewayServer, route, statPrefix string, sni bool) (*listenerv3.FilterChain, error) {
	hcm, err := httpConnectionManager(statPrefix, route)
	if err != nil {
		return nil, err
	}
	ts, err := marshalAny(downstreamTLS(srv.tls))
	if err != nil {
		return nil, err
	}
	fc := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{hcm},
		TransportSocket: &corev3.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ts},
		},
	}
	if sni {
		var names []string
		for _, f := range srv.hosts {
			if f.host != "*" {
				names = append(names, f.host)
			}
		}
		if len(names) > 0 {
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: names}
		}
	}
	return fc, nil
}

// downstreamTLS translates a server's tls settings: the certificate chain
// and private key files, ALPN h2 and http/1.1 (as Istio for HTTPS
// servers), TLS 1.2 as the minimum unless set (Istio's default), and for
// MUTUAL the CA file clients must chain to.
func downstreamTLS(t *networking.ServerTLSSettings) *tlsv3.DownstreamTlsContext {
	params := &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsVersion(t.GetMinProtocolVersion(), tlsv3.TlsParameters_TLSv1_2),
		TlsMaximumProtocolVersion: tlsVersion(t.GetMaxProtocolVersion(), tlsv3.TlsParameters_TLS_AUTO),
		CipherSuites:              t.GetCipherSuites(),
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsParams: params,
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(t.GetServerCertificate()),
			PrivateKey:       fileSource(t.GetPrivateKey()),
		}},
		AlpnProtocols: []string{"h2", "http/1.1"},
	}}
	if t.GetMode() == networking.ServerTLSSettings_MUTUAL {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(t.GetCaCertificates())},
		}
	}
	return ctx
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func tlsVersion(v networking.ServerTLSSettings_TLSProtocol, def tlsv3.TlsParameters_TlsProtocol) tlsv3.TlsParameters_TlsProtocol {
	switch v {
	case networking.ServerTLSSettings_TLSV1_0:
		return tlsv3.TlsParameters_TLSv1_0
	case networking.ServerTLSSettings_TLSV1_1:
		return tlsv3.TlsParameters_TLSv1_1
	case networking.ServerTLSSettings_TLSV1_2:
		return tlsv3.TlsParameters_TLSv1_2
	case networking.ServerTLSSettings_TLSV1_3:
		return tlsv3.TlsParameters_TLSv1_3
	}
	return def
}

package compiler

import (
	"fmt"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// This file builds what a sidecar whose traffic iptables captures
// (INTERCEPTION_MODE=REDIRECT, `gitmesh proxy-init`) gets on top of the
// explicit-proxy resources, as Istio emits it (docs/xds-conventions.md,
// "Traffic capture"): the outbound listener uses the original
// destination, TCP service ports get a listener at each service address
// that is not bound (bind_to_port: false) and receives the connections
// handed off to it, HTTP virtual hosts also answer to the service
// addresses, and what the mesh does not know goes to PassthroughCluster
// (ALLOW_ANY) or nowhere (REGISTRY_ONLY).

// Names Istio gives the capture resources.
const (
	passthroughClusterName = "PassthroughCluster"
	blackHoleClusterName   = "BlackHoleCluster"
	allowAnyName           = "allow_any"
)

// capturing reports whether the proxy's traffic is captured by iptables.
func (b *builder) capturing() bool {
	return b.class.Role != nodemeta.RoleGateway && b.class.Interception == nodemeta.InterceptionRedirect
}

// registryOnly reports whether the sidecar's outboundTrafficPolicy is
// REGISTRY_ONLY (ALLOW_ANY is Istio's default).
func (b *builder) registryOnly() bool { return b.scope != nil && b.scope.registryOnly }

// checkVIPs validates ServiceEntry addresses. Istio also takes CIDR
// ranges for TCP services; a one-address range is read as the address,
// wider ranges are not supported.
func checkVIPs(r *reporter, addrs []string) []string {
	var out []string
	for i, a := range addrs {
		path := fmt.Sprintf("spec.addresses[%d]", i)
		if ip, err := netip.ParseAddr(a); err == nil && ip.Zone() == "" {
			out = append(out, ip.Unmap().String())
			continue
		}
		pf, err := netip.ParsePrefix(a)
		switch {
		case err != nil:
			r.errorf(CodeInvalidValue, path, "address %q is neither an IP address nor a CIDR range", a)
		case pf.IsSingleIP():
			out = append(out, pf.Addr().Unmap().String())
		default:
			r.errorf(CodeUnsupportedValue, path, "CIDR range %q is not supported yet (use single addresses)", a)
		}
	}
	return out
}

// vipDomain is how a request to ip carries it in its Host header.
func vipDomain(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
		return "[" + ip + "]"
	}
	return ip
}

// captureOutbound makes the outbound listener the capture target: it
// hands redirected connections to the listener of their original
// destination (use_original_dst), and sends TLS to destinations the mesh
// does not know through PassthroughCluster, or BlackHoleCluster under
// REGISTRY_ONLY, as Istio's virtualOutbound listener does. Plaintext
// keeps the HTTP connection manager, whose allow_any or block_all
// virtual host does the same for HTTP.
func (b *builder) captureOutbound(l *listenerv3.Listener) error {
	target := passthroughClusterName
	if b.registryOnly() {
		target = blackHoleClusterName
	}
	tcp, err := marshalAny(&tcpproxyv3.TcpProxy{
		StatPrefix:       target,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: target},
	})
	if err != nil {
		return fmt.Errorf("building listener %s: %w", l.GetName(), err)
	}
	inspector, err := marshalAny(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return fmt.Errorf("building listener %s: %w", l.GetName(), err)
	}
	l.UseOriginalDst = wrapperspb.Bool(true)
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       wellknown.TlsInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector},
	}}
	l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
		Name:             target,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp},
		}},
	})
	return nil
}

// vipListeners returns, for each TCP service port the sidecar sees, a
// tcp_proxy listener "<address>_<port>" at each of the service's
// addresses, not bound: the outbound listener hands it the connections
// redirected from that address (Istio's per-service TCP listeners).
func (b *builder) vipListeners() ([]*listenerv3.Listener, error) {
	seen := map[string]bool{}
	var out []*listenerv3.Listener
	for _, s := range b.p.services {
		if !b.visible(s) {
			continue
		}
		for _, pt := range s.ports {
			if pt.protocol != protoTCP {
				continue
			}
			for _, ip := range s.addresses {
				key := ip + "_" + strconv.FormatUint(uint64(pt.number), 10)
				if seen[key] {
					continue // two services with one address: the first (by host) has it
				}
				seen[key] = true
				l, err := b.tcpListener(ip, s, pt)
				if err != nil {
					return nil, err
				}
				l.BindToPort = wrapperspb.Bool(false)
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// allowAnyHost is Istio's virtual host for unknown hosts under ALLOW_ANY:
// every request goes to its original destination.
func allowAnyHost() *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name:    allowAnyName,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:  allowAnyName,
			Match: translateRouteMatch(nil),
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: passthroughClusterName},
				Timeout:          noTimeout(),
				MaxGrpcTimeout:   noTimeout(),
			}},
		}},
	}
}

// captureClusters are Istio's PassthroughCluster (ORIGINAL_DST: the
// destination the client dialled) and BlackHoleCluster (no endpoints).
func captureClusters() []*clusterv3.Cluster {
	return []*clusterv3.Cluster{
		{
			Name:                 blackHoleClusterName,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(connectTimeout),
		},
		{
			Name:                 passthroughClusterName,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			ConnectTimeout:       durationpb.New(connectTimeout),
		},
	}
}

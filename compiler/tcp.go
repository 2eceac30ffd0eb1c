package compiler

import (
	"fmt"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// This file builds a sidecar's TCP proxy listeners. The proxy has no
// iptables capture and no service VIPs, so a TCP service port gets its own
// listener on the outbound listener's IP with the service port
// (docs/xds-conventions.md): a client connects to OUTBOUND_IP:<port>. One
// listener per port: when several services share a TCP port, the first
// (by host) gets it (CodeSharedTCPPort warns).

// tcpListeners returns the sidecar's TCP proxy listeners, one per TCP
// service port it sees, named "<ip>_<port>". A port that one of the
// sidecar's own addresses already uses is left out.
func (b *builder) tcpListeners() ([]*listenerv3.Listener, error) {
	out, err := splitIPPort(b.class.Outbound)
	if err != nil {
		return nil, fmt.Errorf("building TCP listeners: %w", err)
	}
	own := map[string]bool{}
	for _, a := range []string{b.class.Outbound, b.class.Inbound, b.class.App} {
		if hp, err := splitIPPort(a); err == nil {
			own[hp.Host+":"+strconv.FormatUint(uint64(hp.Port), 10)] = true
		}
	}
	seen := map[uint32]bool{}
	var listeners []*listenerv3.Listener
	for _, s := range b.p.services {
		if !b.visible(s) {
			continue
		}
		for _, pt := range s.ports {
			addr := out.Host + ":" + strconv.FormatUint(uint64(pt.number), 10)
			if pt.protocol != protoTCP || seen[pt.number] || own[addr] {
				continue
			}
			seen[pt.number] = true
			l, err := b.tcpListener(out.Host, s, pt)
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, l)
		}
	}
	return listeners, nil
}

// tcpListener returns the TCP proxy listener of one service port: to the
// destinations of the first tcp rule of the host's VirtualService that
// applies to this proxy and port, else to the port's cluster.
func (b *builder) tcpListener(ip string, s *service, pt servicePort) (*listenerv3.Listener, error) {
	name := ip + "_" + strconv.FormatUint(uint64(pt.number), 10)
	tp := &tcpproxyv3.TcpProxy{}
	target := clusterName(pt.number, "", s.fqdn)
	tp.StatPrefix = target
	tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: target}
	if v := b.meshVirtualService(s.fqdn); v != nil {
		if rt := b.tcpRule(v, pt.number); rt != nil {
			b.tcpTarget(tp, rt, s, pt)
		}
	}
	filter, err := marshalAny(tp)
	if err != nil {
		return nil, fmt.Errorf("building listener %s: %w", name, err)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(ip, pt.number),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: filter},
		}}}},
	}, nil
}

// tcpRule returns the first valid tcp rule of v that applies to this
// proxy on port (no match, or a match whose port, gateways, sourceLabels
// and sourceNamespace fit).
func (b *builder) tcpRule(v *virtualService, port uint32) *tcpRoute {
	for _, rt := range v.tcp {
		if !rt.valid {
			continue
		}
		if len(rt.spec.GetMatch()) == 0 {
			return rt
		}
		for _, m := range rt.spec.GetMatch() {
			if m.GetPort() != 0 && m.GetPort() != port {
				continue
			}
			if b.sourceMatchesL4(m.GetGateways(), m.GetSourceLabels(), m.GetSourceNamespace(), "", rt.owner.ns) {
				return rt
			}
		}
	}
	return nil
}

// tcpTarget points tp at rt's destinations (weighted when more than one).
func (b *builder) tcpTarget(tp *tcpproxyv3.TcpProxy, rt *tcpRoute, s *service, pt servicePort) {
	var clusters []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight
	for _, d := range rt.dests {
		if d.weight == 0 {
			continue
		}
		c, _, ok := b.destCluster(d, pt.number)
		if !ok {
			return
		}
		clusters = append(clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c, Weight: d.weight})
	}
	switch len(clusters) {
	case 0:
	case 1:
		tp.StatPrefix = clusters[0].GetName()
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0].GetName()}
	default:
		tp.StatPrefix = s.fqdn + ":" + strconv.FormatUint(uint64(pt.number), 10)
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: clusters}}
	}
}

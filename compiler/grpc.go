package compiler

import (
	"fmt"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// grpcClient adds what a proxyless gRPC client (GENERATOR=grpc) reads, as
// Istio's grpc generator serves it (docs/proxyless-grpc.md):
//
//   - per HTTP, HTTP2 or GRPC port of every service the client sees
//     (exportTo, Sidecar egress hosts), one API listener per name it may
//     dial:
//     "<fqdn>:<port>" and, for cluster-local hosts, "<name>.<ns>:<port>",
//     "<name>.<ns>.svc:<port>" and (in the client's NAMESPACE)
//     "<name>:<port>", plus each form without the port when the service has
//     a single port. These are the sidecar's VirtualHost domains: grpc-go
//     asks LDS for the dial target and picks the VirtualHost whose domain
//     is the target. A name another service port already has, FQDN forms
//     first, is left out, as in the sidecar's RouteConfiguration.
//   - in each of them, inline, the RouteConfiguration
//     "outbound|<port>||<fqdn>" (Istio's RDS name) with one VirtualHost
//     holding exactly the routes the sidecar's VirtualHost for that port
//     gets, except that the timeout is also max_stream_duration, which
//     grpc-go reads (grpcRoutes). Istio serves it over RDS; gitmesh inlines it (grpc-go accepts
//     both) because go-control-plane's Snapshot.Consistent, which the xds
//     server checks, does not follow api_listener references and would
//     reject RouteConfigurations that no filter chain names.
//   - every cluster with an lb_policy grpc-go implements (ROUND_ROBIN,
//     RING_HASH, LEAST_REQUEST; anything else becomes ROUND_ROBIN), and as
//     EDS: grpc-go accepts EDS, LOGICAL_DNS and aggregate
//     clusters only, so a DNS service's STRICT_DNS cluster is served as EDS
//     with its endpoints (host names, which grpc-go resolves when it
//     connects) in a ClusterLoadAssignment.
func (b *builder) grpcClient(res *resources) error {
	type portKey struct {
		s    *service
		port servicePort
	}
	// As in Istio, a Sidecar (egress hosts) and exportTo scope what a
	// gRPC client sees, exactly as for a sidecar of its namespace and labels.
	b.scope = b.p.sidecarFor(b.namespace, b.class.Labels)
	var keys []portKey
	for _, s := range b.p.services {
		if !b.visible(s) {
			continue
		}
		for _, pt := range s.ports {
			if pt.protocol == protoHTTP || pt.protocol == protoHTTP2 || pt.protocol == protoGRPC {
				keys = append(keys, portKey{s, pt})
			}
		}
	}
	// The same precedence as outboundRoutes: full names first, then the
	// shorter forms where still free, so that no name means two services.
	taken := map[string]bool{}
	names := make([][]string, len(keys))
	for _, forms := range []func(portKey) []string{
		func(k portKey) []string { return fullDomains(k.s, k.port) },
		func(k portKey) []string { return shortDomains(k.s, k.port, b.namespace) },
	} {
		for i, k := range keys {
			for _, n := range forms(k) {
				if !taken[n] {
					taken[n] = true
					names[i] = append(names[i], n)
				}
			}
		}
	}

	for i, k := range keys {
		rc := &routev3.RouteConfiguration{
			Name: clusterName(k.port.number, "", k.s.fqdn),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    k.s.fqdn + ":" + strconv.FormatUint(uint64(k.port.number), 10),
				Domains: names[i],
				Routes:  grpcRoutes(b.serviceRoutes(k.s, k.port)),
			}},
		}
		for _, n := range names[i] {
			l, err := apiListener(n, rc)
			if err != nil {
				return err
			}
			res.listeners = append(res.listeners, l)
		}
	}

	for _, c := range res.clusters {
		switch c.GetLbPolicy() {
		case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_LEAST_REQUEST:
		default:
			// grpc-go NACKs any other lb_policy (RANDOM for Istio's
			// RANDOM); Istio's grpc generator falls back likewise.
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}
		if c.GetType() != clusterv3.Cluster_STRICT_DNS {
			continue
		}
		cla := c.GetLoadAssignment()
		cla.ClusterName = c.GetName()
		c.LoadAssignment = nil
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: c.GetName()}
		res.endpoints = append(res.endpoints, cla)
	}
	return checkAPIListeners(res)
}

// grpcRoutes adapts a sidecar's routes as Istio does for proxyless gRPC:
// grpc-go reads a route's timeout from max_stream_duration (0 means none)
// and ignores timeout and max_grpc_timeout, so the VirtualService timeout
// moves there.
func grpcRoutes(routes []*routev3.Route) []*routev3.Route {
	for _, r := range routes {
		a := r.GetRoute()
		if a == nil {
			continue
		}
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: a.GetTimeout()}
		a.MaxGrpcTimeout = nil
	}
	return routes
}

// apiListener returns the API listener name whose HTTP connection manager
// holds rc inline, with the HTTP filters grpc-go implements client-side:
// fault (no fault unless a route configures one), then router.
func apiListener(name string, rc *routev3.RouteConfiguration) (*listenerv3.Listener, error) {
	fault, err := marshalAny(&faultv3.HTTPFault{})
	if err != nil {
		return nil, fmt.Errorf("building API listener %s: %w", name, err)
	}
	router, err := marshalAny(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("building API listener %s: %w", name, err)
	}
	hcm, err := marshalAny(&hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}},
			{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("building API listener %s: %w", name, err)
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}, nil
}

// checkAPIListeners checks what resources.check does not see inside API
// listeners: no listener is defined twice, each has an inline
// RouteConfiguration, and its routes name existing clusters.
func checkAPIListeners(res *resources) error {
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range res.clusters {
		clusters[c.GetName()] = c
	}
	seen := map[string]bool{}
	for _, l := range res.listeners {
		if seen[l.GetName()] {
			return fmt.Errorf("listener %s is defined twice", l.GetName())
		}
		seen[l.GetName()] = true
		a := l.GetApiListener().GetApiListener()
		if a == nil {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := a.UnmarshalTo(hcm); err != nil {
			return fmt.Errorf("API listener %s: %w", l.GetName(), err)
		}
		if hcm.GetRouteConfig() == nil {
			return fmt.Errorf("API listener %s: no inline route configuration", l.GetName())
		}
		if err := checkRouteConfiguration(hcm.GetRouteConfig(), clusters); err != nil {
			return fmt.Errorf("API listener %s: %w", l.GetName(), err)
		}
	}
	return nil
}

package compiler

import (
	"fmt"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"
)

// Route and VirtualHost names Istio uses.
const (
	defaultRouteName = "default"
	blackHoleName    = "block_all"
)

// outboundRoutes returns the sidecar's outbound RouteConfiguration: one
// VirtualHost per HTTP service port it sees (see visible), named
// "<fqdn>:<port>", with the VirtualService's routes in order, or Istio's
// default route to the port's cluster when the host has no
// VirtualService; plus the block_all VirtualHost under REGISTRY_ONLY.
func (b *builder) outboundRoutes() *routev3.RouteConfiguration {
	type vhostKey struct {
		s    *service
		port servicePort
	}
	var keys []vhostKey
	for _, s := range b.p.services {
		if !b.visible(s) {
			continue
		}
		for _, pt := range s.ports {
			if pt.protocol != protoTCP {
				keys = append(keys, vhostKey{s, pt})
			}
		}
	}
	// Full names first, then the shorter forms where still free, so that
	// no domain appears twice (Envoy rejects that).
	taken := map[string]bool{}
	domains := make([][]string, len(keys))
	for i, k := range keys {
		for _, d := range fullDomains(k.s, k.port) {
			if !taken[d] {
				taken[d] = true
				domains[i] = append(domains[i], d)
			}
		}
	}
	for i, k := range keys {
		for _, d := range shortDomains(k.s, k.port, b.namespace) {
			if !taken[d] {
				taken[d] = true
				domains[i] = append(domains[i], d)
			}
		}
	}
	if b.capturing() {
		// A captured client that dials a service address sends it as
		// its Host (Istio adds these domains too).
		for i, k := range keys {
			for _, ip := range k.s.addresses {
				for _, d := range withPort(k.s, k.port, vipDomain(ip)) {
					if !taken[d] {
						taken[d] = true
						domains[i] = append(domains[i], d)
					}
				}
			}
		}
	}
	rc := &routev3.RouteConfiguration{Name: outboundName}
	for i, k := range keys {
		name := k.s.fqdn + ":" + strconv.FormatUint(uint64(k.port.number), 10)
		rc.VirtualHosts = append(rc.VirtualHosts, b.cachedServiceVhost(k.s, k.port, name, domains[i]))
	}
	switch {
	case b.registryOnly():
		rc.VirtualHosts = append(rc.VirtualHosts, blockAllHost())
	case b.capturing():
		rc.VirtualHosts = append(rc.VirtualHosts, allowAnyHost())
	}
	return rc
}

// visible reports whether a sidecar's outbound listener routes s: the
// ServiceEntry is exported to the proxy's namespace and its Sidecar's
// egress hosts (if any) include it.
func (b *builder) visible(s *service) bool {
	return s.export.visibleTo(b.namespace) && b.scope.inScope(s.namespace, s.fqdn)
}

// fullDomains are the FQDN forms of a service port's domains.
func fullDomains(s *service, pt servicePort) []string {
	return withPort(s, pt, s.fqdn)
}

// shortDomains are the short forms of a cluster-local service's domains:
// name.ns and name.ns.svc, plus name for services in the proxy's own
// namespace (as Kubernetes resolves short names).
func shortDomains(s *service, pt servicePort, proxyNS string) []string {
	if !s.local {
		return nil
	}
	var out []string
	if s.namespace == proxyNS {
		out = append(out, withPort(s, pt, s.name)...)
	}
	out = append(out, withPort(s, pt, s.name+"."+s.namespace)...)
	out = append(out, withPort(s, pt, s.name+"."+s.namespace+".svc")...)
	return out
}

// withPort returns host:port, and host alone when the service has a single
// port (so that no domain appears in two of its VirtualHosts).
func withPort(s *service, pt servicePort, host string) []string {
	hp := host + ":" + strconv.FormatUint(uint64(pt.number), 10)
	if len(s.ports) == 1 {
		return []string{host, hp}
	}
	return []string{hp}
}

// serviceRoutes returns the routes of a service port's VirtualHost: the
// routes of the host's VirtualService (when it is bound to sidecars and
// exported to the proxy's namespace), else Istio's default route.
func (b *builder) serviceRoutes(s *service, pt servicePort) []*routev3.Route {
	if v := b.meshVirtualService(s.fqdn); v != nil {
		return b.translateHTTPRoutes(v.http, routeCtx{port: pt.number})
	}
	return []*routev3.Route{b.defaultRoute(clusterName(pt.number, "", s.fqdn), portConsistentHash(s, pt.number))}
}

// defaultRoute is Istio's route for a host without a VirtualService
// (BuildDefaultHTTPOutboundRoute): "default", every request to cluster,
// no timeout, the default retry policy, and the DestinationRule's
// consistent hash if any.
func (b *builder) defaultRoute(cluster string, ch *networking.LoadBalancerSettings_ConsistentHashLB) *routev3.Route {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	setTimeout(action, nil)
	rp, err := retryPolicy(nil, false)
	if err != nil {
		b.fail(err)
	}
	action.RetryPolicy = rp
	if hp := hashPolicy(ch); hp != nil {
		action.HashPolicy = []*routev3.RouteAction_HashPolicy{hp}
	}
	return &routev3.Route{Name: defaultRouteName, Match: translateRouteMatch(nil), Action: &routev3.Route_Route{Route: action}}
}

// blockAllHost is Istio's VirtualHost for unknown hosts under
// outboundTrafficPolicy REGISTRY_ONLY: every request gets 502.
func blockAllHost() *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name:    blackHoleName,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:   blackHoleName,
			Match:  translateRouteMatch(nil),
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
		}},
	}
}

func clusterAction(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          noTimeout(),
	}}
}

// noTimeout disables the route timeout (Envoy's default is 15s), as Istio
// does when a VirtualService sets none.
func noTimeout() *durationpb.Duration { return durationpb.New(0) }

// inboundRoutes returns the sidecar's inbound RouteConfiguration: every
// request goes to the local application.
func inboundRoutes(appCluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: inboundName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    inboundName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: clusterAction(appCluster),
			}},
		}},
	}
}

// clusterName is "outbound|<port>|<subset>|<fqdn>".
func clusterName(port uint32, subset, fqdn string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + fqdn
}

// inboundClusterName is "inbound|<app port>||".
func inboundClusterName(port uint32) string {
	return fmt.Sprintf("inbound|%d||", port)
}

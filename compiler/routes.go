package compiler

import (
	"fmt"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// outboundRoutes returns the sidecar's outbound RouteConfiguration: one
// VirtualHost per service port, named "<fqdn>:<port>", with the
// VirtualService's routes in order, or one catch-all route to the port's
// default cluster when the host has no VirtualService.
func (b *builder) outboundRoutes() *routev3.RouteConfiguration {
	type vhostKey struct {
		s    *service
		port servicePort
	}
	var keys []vhostKey
	for _, s := range b.p.services {
		for _, pt := range s.ports {
			keys = append(keys, vhostKey{s, pt})
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
	rc := &routev3.RouteConfiguration{Name: outboundName}
	for i, k := range keys {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    k.s.fqdn + ":" + strconv.FormatUint(uint64(k.port.number), 10),
			Domains: domains[i],
			Routes:  b.serviceRoutes(k.s, k.port),
		})
	}
	return rc
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

// serviceRoutes returns the routes of a service port's VirtualHost.
func (b *builder) serviceRoutes(s *service, pt servicePort) []*routev3.Route {
	if s.vs == nil {
		return []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: clusterAction(clusterName(pt.number, "", s.fqdn)),
		}}
	}
	var out []*routev3.Route
	for _, rt := range s.routes {
		if !rt.valid {
			continue
		}
		action := b.routeAction(pt, rt)
		if action == nil {
			continue
		}
		matches := rt.matches
		if len(matches) == 0 {
			matches = []routeMatch{{}}
		}
		for _, m := range matches {
			out = append(out, &routev3.Route{Name: rt.name, Match: envoyMatch(m), Action: action})
		}
	}
	return out
}

// routeAction returns where rt sends traffic that arrived for port pt, or
// nil when a destination does not resolve (which validation reports).
func (b *builder) routeAction(pt servicePort, rt httpRoute) *routev3.Route_Route {
	type weighted struct {
		cluster string
		weight  uint32
	}
	var ws []weighted
	index := map[string]int{}
	for _, d := range rt.dests {
		ds := b.p.byHost[d.host]
		if ds == nil || (d.subset != "" && !ds.hasSubset(d.subset)) {
			return nil
		}
		port, ok := ds.destPort(pt.number, d.port)
		if !ok {
			return nil
		}
		if d.weight == 0 {
			continue
		}
		name := clusterName(port, d.subset, ds.fqdn)
		if i, ok := index[name]; ok {
			ws[i].weight += d.weight
			continue
		}
		index[name] = len(ws)
		ws = append(ws, weighted{name, d.weight})
	}
	switch len(ws) {
	case 0:
		return nil
	case 1:
		return clusterAction(ws[0].cluster)
	}
	wc := &routev3.WeightedCluster{}
	for _, w := range ws {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: w.cluster, Weight: wrapperspb.UInt32(w.weight)})
	}
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
		Timeout:          noTimeout(),
	}}
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

// envoyMatch translates one Istio match (an empty one matches everything).
func envoyMatch(m routeMatch) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	switch {
	case m.hasURI && m.exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: m.uriExact}
	case m.hasURI:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: m.uriPrefix}
	}
	for _, h := range m.headers {
		hm := &routev3.HeaderMatcher{Name: h.name}
		if h.present {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		} else {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.exact},
			}}
		}
		rm.Headers = append(rm.Headers, hm)
	}
	return rm
}

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
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, fqdn)
}

// inboundClusterName is "inbound|<app port>||".
func inboundClusterName(port uint32) string {
	return fmt.Sprintf("inbound|%d||", port)
}

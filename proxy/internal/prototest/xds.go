package prototest

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/gitmesh/gitmesh/proxy/config"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Any marshals m into an Any, failing t when it does not marshal.
func Any(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// SocketAddr is a TCP socket address for host:port addr.
func SocketAddr(t testing.TB, addr string) *corev3.Address {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// HCMListener is a listener with one HCM using RDS routeName. filters
// default to the router.
func HCMListener(t testing.TB, name, addr, routeName string, filters ...string) *listenerv3.Listener {
	if len(filters) == 0 {
		filters = []string{wellknown.Router}
	}
	var hf []*hcmv3.HttpFilter
	for _, f := range filters {
		h := &hcmv3.HttpFilter{Name: f}
		if f == wellknown.Router {
			h.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: Any(t, &routerv3.Router{})}
		}
		hf = append(hf, h)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			RouteConfigName: routeName,
		}},
		HttpFilters: hf,
	}
	l := &listenerv3.Listener{
		Name:    name,
		Address: SocketAddr(t, addr),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: Any(t, hcm)},
		}}}},
	}
	if name == "inbound" {
		l.TrafficDirection = corev3.TrafficDirection_INBOUND
	} else {
		l.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	}
	return l
}

// RouteConfig is a RouteConfiguration of vhosts.
func RouteConfig(name string, vhosts ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts}
}

// VirtualHost is a virtual host serving domains with routes.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// PrefixMatch matches path prefix and headers.
func PrefixMatch(prefix string, headers ...*routev3.HeaderMatcher) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}, Headers: headers}
}

// ToCluster routes m to cluster.
func ToCluster(m *routev3.RouteMatch, cluster string) *routev3.Route {
	return &routev3.Route{Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}}
}

// ToWeighted splits m's traffic between clusters by weight.
func ToWeighted(m *routev3.RouteMatch, weights map[string]uint32) *routev3.Route {
	wc := &routev3.WeightedCluster{}
	for _, name := range config.SortedKeys(weights) {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(weights[name])})
	}
	return &routev3.Route{Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
	}}}
}

// ExactHeader matches header name with value exactly.
func ExactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
	}}
}

// IstioClusterMeta is the istio filter_metadata Istio puts on a cluster of service host (and subset).
func IstioClusterMeta(host, subset string) *corev3.Metadata {
	name, ns, _ := strings.Cut(host, ".")
	ns, _, _ = strings.Cut(ns, ".")
	s, _ := structpb.NewStruct(map[string]any{
		"services": []any{map[string]any{"host": host, "name": name, "namespace": ns}},
		"subset":   subset,
	})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": s}}
}

// Endpoint is one endpoint of a ClusterLoadAssignment.
type Endpoint struct {
	Addr    string
	Version string
	Weight  uint32
}

// LBEndpoints are eps as healthy endpoints with Istio's workload metadata.
func LBEndpoints(t testing.TB, eps []Endpoint) []*endpointv3.LbEndpoint {
	var out []*endpointv3.LbEndpoint
	for _, e := range eps {
		md, _ := structpb.NewStruct(map[string]any{
			"workload": "wl-" + e.Version, "namespace": "default", "version": e.Version,
			"labels": map[string]any{"app": "reviews", "version": e.Version},
		})
		w := e.Weight
		if w == 0 {
			w = 1
		}
		out = append(out, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddr(t, e.Addr)}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(w),
			Metadata:            &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}},
		})
	}
	return out
}

// CLA is the ClusterLoadAssignment of cluster name with eps.
func CLA(t testing.TB, name string, eps ...Endpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: LBEndpoints(t, eps),
	}}}
}

// InlineCluster is a cluster of discovery type typ with eps inline.
func InlineCluster(t testing.TB, name string, typ clusterv3.Cluster_DiscoveryType, eps ...Endpoint) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       CLA(t, name, eps...),
	}
}

// StaticCluster is a STATIC cluster over addrs with the istio service
// metadata of host; mutate adjusts it.
func StaticCluster(t testing.TB, name, host string, addrs []string, mutate ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
	var eps []Endpoint
	for i, a := range addrs {
		eps = append(eps, Endpoint{Addr: a, Version: "v" + strconv.Itoa(i+1)})
	}
	c := InlineCluster(t, name, clusterv3.Cluster_STATIC, eps...)
	c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	c.Metadata = IstioClusterMeta(host, "")
	for _, m := range mutate {
		m(c)
	}
	return c
}

// PassthroughCluster is Istio's PassthroughCluster: ORIGINAL_DST,
// CLUSTER_PROVIDED.
func PassthroughCluster(mutate ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 "PassthroughCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(time.Second),
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

// StrMatch is a StringMatcher of kind (exact, prefix, suffix, contains, regex) on v.
func StrMatch(kind, v string, ignoreCase bool) *matcherv3.StringMatcher {
	sm := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch kind {
	case "exact":
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v}
	case "prefix":
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: v}
	case "suffix":
		sm.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: v}
	case "contains":
		sm.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: v}
	case "regex":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	}
	return sm
}

// Named sets r's name and returns it.
func Named(name string, r *routev3.Route) *routev3.Route { r.Name = name; return r }

package compiler

import (
	"crypto/sha256"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// connectTimeout is every cluster's connect_timeout.
const connectTimeout = 10 * time.Second

// httpProtocolOptionsKey is the typed_extension_protocol_options key of
// upstream HTTP options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// serviceGroup is one service's clusters and ClusterLoadAssignments.
type serviceGroup struct {
	svc *service
	*clusterGroup
}

// outboundClusters returns, per service, a cluster per service port and
// per subset and the ClusterLoadAssignments of the EDS ones.
func (b *builder) outboundClusters() ([]serviceGroup, error) {
	memo := b.cachesClusters()
	var inputs [sha256.Size]byte
	if memo {
		var err error
		if inputs, err = b.clusterInputs(); err != nil {
			return nil, fmt.Errorf("hashing cluster inputs: %w", err)
		}
	}
	// Each service's clusters depend on the service alone (and inputs):
	// built on all cores, each into its own slot.
	groups := make([]serviceGroup, len(b.p.services))
	errs := make([]error, len(b.p.services))
	parallelFor(len(b.p.services), func(i int) {
		groups[i], errs[i] = b.groupOf(b.p.services[i], memo, inputs)
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return groups, nil
}

// groupOf returns s's clusters, from the Cache when memo is set and
// it holds them. It is safe to call for several services at once.
func (b *builder) groupOf(s *service, memo bool, inputs [sha256.Size]byte) (serviceGroup, error) {
	var key [sha256.Size]byte
	if memo {
		var err error
		if key, err = clusterKey(inputs, s); err != nil {
			return serviceGroup{}, fmt.Errorf("hashing service %s: %w", s.fqdn, err)
		}
		if g, ok := b.p.cache.clusterGroup(key); ok {
			return serviceGroup{s, g}, nil
		}
	}
	g, err := b.serviceClusters(s)
	if err != nil {
		return serviceGroup{}, err
	}
	if memo {
		b.p.cache.putClusterGroup(key, g)
	}
	return serviceGroup{s, g}, nil
}

// cachesClusters reports whether outboundClusters keeps each service's
// clusters in the Cache, by a hash of what they read, to share them with
// later compiles: with a Cache, except for gRPC clients, whose clusters
// grpcClient adjusts in place.
func (b *builder) cachesClusters() bool {
	return b.p.cache != nil && b.class.Generator != nodemeta.GeneratorGRPC
}

// scopedClusters returns the clusters and ClusterLoadAssignments of the
// groups a sidecar keeps, in order: as Istio's SidecarScope, those of the
// services visible to it (exportTo, and its Sidecar's egress hosts when
// one applies) and of every service whose clusters res's routes or TCP
// listeners reference (a VirtualService destination outside the egress
// hosts), so that no reference dangles. Gateways and gRPC clients keep
// every group. Groups taken from the Cache are marked shared.
func (b *builder) scopedClusters(res *resources, groups []serviceGroup) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	scoped := b.class.Role != nodemeta.RoleGateway && b.class.Generator != nodemeta.GeneratorGRPC
	var used map[string]bool
	if scoped {
		used = referencedClusters(res)
	}
	var clusters []*clusterv3.Cluster
	var clas []*endpointv3.ClusterLoadAssignment
	for _, g := range groups {
		if scoped && !b.visible(g.svc) && !g.references(used) {
			continue
		}
		if b.cachesClusters() {
			b.share(g.clusterGroup)
		}
		clusters, clas = append(clusters, g.clusters...), append(clas, g.clas...)
	}
	return clusters, clas
}

// references reports whether one of g's clusters is in names.
func (g serviceGroup) references(names map[string]bool) bool {
	for _, c := range g.clusters {
		if names[c.GetName()] {
			return true
		}
	}
	return false
}

// referencedClusters returns the names of the clusters res's routes and
// listeners forward or mirror to.
func referencedClusters(res *resources) map[string]bool {
	names := map[string]bool{}
	for _, rc := range res.routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				for _, n := range routeClusters(rt) {
					names[n] = true
				}
			}
		}
	}
	for _, l := range res.listeners {
		for _, n := range listenerClusters(l) {
			names[n] = true
		}
	}
	return names
}

// share marks g's resources as shared with the Cache (see
// resources.validateResource).
func (b *builder) share(g *clusterGroup) {
	if b.shared == nil {
		b.shared = map[proto.Message]bool{}
	}
	for _, c := range g.clusters {
		b.shared[c] = true
	}
	for _, cla := range g.clas {
		b.shared[cla] = true
	}
}

// serviceClusters returns s's clusters (one per port and per subset) and
// the ClusterLoadAssignments of the EDS ones.
func (b *builder) serviceClusters(s *service) (*clusterGroup, error) {
	g := &clusterGroup{}
	all := b.serviceEndpoints(s)
	sans := b.serviceSANs(all)
	for _, pt := range s.ports {
		eps := b.markMeshed(all, pt)
		add := func(subsetName string, eps []endpoint) error {
			c, cla, err := outboundCluster(s, pt, subsetName, eps)
			if err != nil {
				return err
			}
			if err := b.applyClusterTLS(c, s, pt, subsetName, clusterPolicy(s, subsetName, pt.number).GetTls(), sans); err != nil {
				return err
			}
			g.clusters = append(g.clusters, c)
			if cla != nil {
				g.clas = append(g.clas, cla)
			}
			return nil
		}
		if err := add("", eps); err != nil {
			return nil, err
		}
		for _, ss := range s.subsets {
			if err := add(ss.name, selectEndpoints(eps, ss.labels)); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// outboundCluster returns the cluster "outbound|<port>|<subset>|<fqdn>"
// with the DestinationRule's traffic policy for that port and subset
// applied, and, for EDS clusters, its ClusterLoadAssignment.
func outboundCluster(s *service, pt servicePort, subsetName string, eps []endpoint) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, error) {
	name := clusterName(pt.number, subsetName, s.fqdn)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		Metadata:       clusterMetadata(s, subsetName),
	}
	cla := loadAssignment(name, eps, pt)
	if s.resolution == networking.ServiceEntry_DNS {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.LoadAssignment = cla
		cla = nil
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: name}
	}
	var opts *upstreamhttpv3.HttpProtocolOptions
	if pt.protocol == protoHTTP2 || pt.protocol == protoGRPC {
		opts = &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		}
	}
	opts = applyTrafficPolicy(c, clusterPolicy(s, subsetName, pt.number), pt, opts)
	if opts != nil {
		a, err := marshalAny(opts)
		if err != nil {
			return nil, nil, fmt.Errorf("building cluster %s: %w", name, err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anyMessage{httpProtocolOptionsKey: a}
	}
	return c, cla, nil
}

// clusterMetadata is filter_metadata.istio = {services: [{host, name,
// namespace}], subset} (subset only for subset clusters).
func clusterMetadata(s *service, subsetName string) *corev3.Metadata {
	svc := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"host":      structpb.NewStringValue(s.fqdn),
		"name":      structpb.NewStringValue(s.name),
		"namespace": structpb.NewStringValue(s.namespace),
	}})
	fields := map[string]*structpb.Value{
		"services": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{svc}}),
	}
	if subsetName != "" {
		fields["subset"] = structpb.NewStringValue(subsetName)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: fields}}}
}

// inboundCluster returns the STATIC cluster of the sidecar's local app,
// with Istio's unlimited circuit breakers (pilot applies the connection
// pool defaults to inbound clusters too).
func inboundCluster(name, host string, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers:      defaultCircuitBreakers(),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{},
				LoadBalancingWeight: wrapUint32(1),
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(host, port),
					}},
					HealthStatus: corev3.HealthStatus_HEALTHY,
				}},
			}},
		},
	}
}

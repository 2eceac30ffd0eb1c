package config

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// MeshConfig is one complete, validated configuration. It is immutable once
// stored in Proxy.current; the data plane reads it without locks.
type MeshConfig struct {
	// Resources is the accepted resource set it was built from (versions
	// and protos), for /config_dump.
	Resources *ResourceSet
	// AppliedAt is when it was swapped in.
	AppliedAt time.Time
	// Listeners maps a bound address (host:port) to its listener.
	Listeners map[string]*ListenerConfig
	// Clusters maps a cluster name to the cluster.
	Clusters map[string]*upstream.Cluster
}

// MissingRef is a referenced resource that has not arrived yet.
type MissingRef struct {
	// TypeURL and Name are the missing resource's type and name.
	TypeURL string
	Name    string
}

// UpstreamHTTPOptionsKey is the typed_extension_protocol_options key of
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions.
const UpstreamHTTPOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// DefaultRouteTimeout is Envoy's route timeout when a route sets none.
const DefaultRouteTimeout = 15 * time.Second

// BuildConfig validates set and builds a meshConfig from it. References to
// route configurations, endpoints and clusters that have not arrived are
// returned as missing: route configurations and endpoints are treated as
// empty, clusters as placeholders that answer "no cluster" (NC). A
// resource the proxy cannot apply is a
// *resourceError naming it. Pools and resolvers are attached later by the
// applier, so buildConfig has no side effects. Secrets known holds
// unchanged (nil for none) are not validated again.
func BuildConfig(set *ResourceSet, known *mtls.SecretStore) (*MeshConfig, []MissingRef, error) {
	var missing []MissingRef
	for _, t := range []string{ClusterType, ListenerType} {
		if !set.Received[t] {
			missing = append(missing, MissingRef{TypeURL: t})
		}
	}
	cfg := &MeshConfig{Resources: set, Listeners: map[string]*ListenerConfig{}, Clusters: map[string]*upstream.Cluster{}}
	if err := buildSecrets(set, known); err != nil {
		return nil, nil, err
	}
	missing = append(missing, secretMissing(set)...)
	for _, name := range SortedKeys(set.ByType[ClusterType]) {
		c := set.ByType[ClusterType][name].(*clusterv3.Cluster)
		cl, miss, err := BuildCluster(c, set.ByType[EndpointType])
		if err != nil {
			return nil, nil, err
		}
		if miss {
			missing = append(missing, MissingRef{TypeURL: EndpointType, Name: edsServiceName(c)})
		}
		cfg.Clusters[name] = cl
	}
	refs := NewClusterRefs(cfg.Clusters)
	tables := map[string]*routing.RouteTable{}
	for _, name := range SortedKeys(set.ByType[RouteType]) {
		rc := set.ByType[RouteType][name].(*routev3.RouteConfiguration)
		rt, err := BuildRouteTable(rc, refs, false)
		if err != nil {
			return nil, nil, &ResourceError{TypeURL: RouteType, Name: name, Field: err.Field, Err: err.Err}
		}
		tables[name] = rt
	}
	for _, name := range SortedKeys(set.ByType[ListenerType]) {
		l := set.ByType[ListenerType][name].(*listenerv3.Listener)
		lc, miss, err := buildListener(l, tables, refs)
		if err != nil {
			return nil, nil, err
		}
		for _, name := range miss {
			missing = append(missing, MissingRef{TypeURL: RouteType, Name: name})
		}
		if prev, dup := cfg.Listeners[lc.Addr]; dup {
			return nil, nil, &ResourceError{TypeURL: ListenerType, Name: name, Field: "address",
				Err: fmt.Errorf("%s is also the address of listener %q", lc.Addr, prev.Name)}
		}
		cfg.Listeners[lc.Addr] = lc
	}
	for _, name := range SortedKeys(refs.Missing) {
		missing = append(missing, MissingRef{TypeURL: ClusterType, Name: name})
	}
	return cfg, missing, nil
}

// clusterRefs resolves the cluster names that routes, mirror policies and
// TCP proxies reference. A name CDS has not delivered resolves to a
// placeholder (cluster.missing) and is recorded: the resource naming it
// still builds, and the set warms until the cluster arrives. With
// go-control-plane's snapshot cache in non-ADS mode a Listener or
// RouteConfiguration may arrive before the CDS update that adds its
// cluster, so a missing cluster is an ordering effect, never a NACK
// (Envoy loads RDS route tables with validate_clusters false and fails
// tcp_proxy connections at connect time).
type clusterRefs struct {
	known map[string]*upstream.Cluster
	// Missing maps a referenced but unknown name to its placeholder,
	// shared by every reference in one build.
	Missing map[string]*upstream.Cluster
}

// NewClusterRefs resolves cluster names against known, the clusters of
// the configuration being built.
func NewClusterRefs(known map[string]*upstream.Cluster) *clusterRefs {
	return &clusterRefs{known: known, Missing: map[string]*upstream.Cluster{}}
}

// get returns the cluster called name, or its placeholder.
func (r *clusterRefs) get(name string) *upstream.Cluster {
	if c, ok := r.known[name]; ok {
		return c
	}
	c, ok := r.Missing[name]
	if !ok {
		c = &upstream.Cluster{Name: name, Missing: true}
		r.Missing[name] = c
	}
	return c
}

// lookup resolves a reference at field. An empty name is invalid; with
// validate (validate_clusters) an unknown one is too, as Envoy rejects
// such a route table.
func (r *clusterRefs) lookup(field, name string, validate bool) (*upstream.Cluster, *fieldError) {
	if name == "" {
		return nil, fieldErr(field, "empty cluster name")
	}
	if _, ok := r.known[name]; !ok && validate {
		return nil, fieldErr(field, "unknown cluster %q (validate_clusters is set)", name)
	}
	return r.get(name), nil
}

// fieldError is an error at a field path inside one resource.
type fieldError struct {
	Field string
	Err   error
}

func fieldErr(field string, format string, args ...any) *fieldError {
	return &fieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// clusterFields are the Cluster fields the proxy implements. Of the rest,
// alt_stat_name and per_connection_buffer_limit_bytes only affect Envoy's
// stats and buffering and are accepted; dns_lookup_family is accepted
// (the resolver returns every family).
var clusterFields = []string{
	"name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment", "metadata",
	"typed_extension_protocol_options", "dns_refresh_rate", "dns_lookup_family", "circuit_breakers",
	"outlier_detection", "common_lb_config", "ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config",
	"upstream_connection_options", "alt_stat_name", "per_connection_buffer_limit_bytes", "transport_socket",
	"transport_socket_matches", "original_dst_lb_config",
}

// BuildCluster validates a cluster. For EDS clusters it reports whether the
// ClusterLoadAssignment is missing (the cluster is then built empty).
func BuildCluster(c *clusterv3.Cluster, cla map[string]proto.Message) (*upstream.Cluster, bool, error) {
	fail := func(field, format string, args ...any) error {
		return &ResourceError{TypeURL: ClusterType, Name: c.GetName(), Field: field, Err: fmt.Errorf(format, args...)}
	}
	failFE := func(fe *fieldError) error {
		return &ResourceError{TypeURL: ClusterType, Name: c.GetName(), Field: fe.Field, Err: fe.Err}
	}
	if err := checkFields(c, clusterFields...); err != nil {
		return nil, false, fail("", "%w", err)
	}
	cl := &upstream.Cluster{
		Name:           c.GetName(),
		ConnectTimeout: 5 * time.Second,
		Service:        clusterService(c),
	}
	if d := c.GetConnectTimeout(); d != nil {
		cl.ConnectTimeout = d.AsDuration()
	}
	switch {
	case c.GetType() == clusterv3.Cluster_ORIGINAL_DST:
		// Envoy: "cluster: cluster type 'original_dst' may only be used
		// with LB type 'CLUSTER_PROVIDED'".
		if c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
			return nil, false, fail("lb_policy", "%s: an ORIGINAL_DST cluster must use CLUSTER_PROVIDED", c.GetLbPolicy())
		}
		cl.LB = upstream.DefaultLB()
	case c.GetLbPolicy() == clusterv3.Cluster_CLUSTER_PROVIDED:
		return nil, false, fail("lb_policy", "CLUSTER_PROVIDED is only valid for an ORIGINAL_DST cluster")
	default:
		lb, fe := buildLB(c)
		if fe != nil {
			return nil, false, failFE(fe)
		}
		cl.LB = lb
	}
	var fe *fieldError
	if cl.Limits, fe = buildBreakers(c.GetCircuitBreakers()); fe != nil {
		return nil, false, failFE(fe)
	}
	if cl.Outlier, fe = buildOutlier(c.GetOutlierDetection()); fe != nil {
		return nil, false, failFE(fe)
	}
	if cl.Sockets, fe = BuildClusterSockets(c); fe != nil {
		return nil, false, failFE(fe)
	}
	if _, ok := c.GetClusterDiscoveryType().(*clusterv3.Cluster_ClusterType); ok {
		return nil, false, fail("cluster_type", "custom cluster types: %w", ErrUnsupported)
	}
	if uco := c.GetUpstreamConnectionOptions(); uco != nil {
		if err := checkFields(uco, "tcp_keepalive"); err != nil {
			return nil, false, fail("upstream_connection_options", "%w", err)
		}
		ka := uco.GetTcpKeepalive()
		cl.KeepAlive = net.KeepAliveConfig{Enable: true, Count: -1, Idle: -1, Interval: -1}
		if v := ka.GetKeepaliveProbes(); v != nil {
			cl.KeepAlive.Count = int(v.GetValue())
		}
		if v := ka.GetKeepaliveTime(); v != nil {
			cl.KeepAlive.Idle = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveInterval(); v != nil {
			cl.KeepAlive.Interval = time.Duration(v.GetValue()) * time.Second
		}
	}
	for key := range c.GetTypedExtensionProtocolOptions() {
		if key != UpstreamHTTPOptionsKey {
			return nil, false, fail("typed_extension_protocol_options", "key %q: %w", key, ErrUnsupported)
		}
	}
	if a := c.GetTypedExtensionProtocolOptions()[UpstreamHTTPOptionsKey]; a != nil {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		field := "typed_extension_protocol_options[" + UpstreamHTTPOptionsKey + "]"
		if err := a.UnmarshalTo(opts); err != nil {
			return nil, false, fail(field, "decoding HttpProtocolOptions: %w", err)
		}
		if err := checkFields(opts, "explicit_http_config", "common_http_protocol_options"); err != nil {
			return nil, false, fail(field, "%w", err)
		}
		explicit := opts.GetExplicitHttpConfig()
		switch {
		case opts.GetUpstreamProtocolOptions() == nil:
		case explicit.GetHttp2ProtocolOptions() != nil:
			cl.HTTP2 = true
		case explicit.GetHttpProtocolOptions() != nil:
		default:
			return nil, false, fail(field+".upstream_protocol_options", "only explicit_http_config with http_protocol_options or http2_protocol_options is supported")
		}
		if common := opts.GetCommonHttpProtocolOptions(); common != nil {
			if err := checkFields(common, "max_requests_per_connection", "idle_timeout"); err != nil {
				return nil, false, fail(field+".common_http_protocol_options", "%w", err)
			}
			cl.MaxRequestsPerConn = common.GetMaxRequestsPerConnection().GetValue()
			if d := common.GetIdleTimeout(); d != nil {
				cl.IdleTimeout = d.AsDuration()
			}
		}
	}
	var missing bool
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		set, fe := buildEndpoints(c.GetLoadAssignment(), cl.LB)
		if fe != nil {
			return nil, false, fail("load_assignment."+fe.Field, "%w", fe.Err)
		}
		cl.Endpoints = set
	case clusterv3.Cluster_EDS:
		if src := c.GetEdsClusterConfig().GetEdsConfig(); src != nil && src.GetAds() == nil {
			return nil, false, fail("eds_cluster_config.eds_config", "only ads config sources are supported")
		}
		m, ok := cla[edsServiceName(c)]
		if !ok {
			missing = true
			cl.Endpoints = upstream.NewBalancedSet(nil, nil, cl.LB)
			break
		}
		set, fe := buildEndpoints(m.(*endpointv3.ClusterLoadAssignment), cl.LB)
		if fe != nil {
			return nil, false, &ResourceError{TypeURL: EndpointType, Name: edsServiceName(c), Field: fe.Field, Err: fe.Err}
		}
		cl.Endpoints = set
	case clusterv3.Cluster_ORIGINAL_DST:
		// Envoy: "ORIGINAL_DST clusters must have no load assignment
		// configured".
		if c.GetLoadAssignment() != nil {
			return nil, false, fail("load_assignment", "an ORIGINAL_DST cluster has no load assignment")
		}
		if od := c.GetOriginalDstLbConfig(); od != nil {
			if err := checkFields(od); err != nil {
				return nil, false, fail("original_dst_lb_config", "%w", err)
			}
		}
		cl.OriginalDst = true
		cl.Endpoints = upstream.NewBalancedSet(nil, nil, cl.LB)
	case clusterv3.Cluster_STRICT_DNS:
		targets, fe := buildDNSTargets(c.GetLoadAssignment())
		if fe != nil {
			return nil, false, fail("load_assignment."+fe.Field, "%w", fe.Err)
		}
		cl.DNSTargets = targets
		if len(targets) == 0 {
			cl.Endpoints = upstream.NewBalancedSet(nil, nil, cl.LB)
		}
		if d := c.GetDnsRefreshRate(); d != nil {
			cl.DNSRefresh = d.AsDuration()
		}
	default:
		return nil, false, fail("type", "%s: %w", c.GetType(), ErrUnsupported)
	}
	return cl, missing, nil
}

// edsServiceName is the ClusterLoadAssignment name of an EDS cluster.
func edsServiceName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// clusterService reads filter_metadata.istio.services[0] of a cluster.
func clusterService(c *clusterv3.Cluster) upstream.ServiceMeta {
	istio := c.GetMetadata().GetFilterMetadata()["istio"]
	s := upstream.ServiceMeta{}
	if svcs := istio.GetFields()["services"].GetListValue().GetValues(); len(svcs) > 0 {
		f := svcs[0].GetStructValue().GetFields()
		s.Host = f["host"].GetStringValue()
		s.Name = f["name"].GetStringValue()
		s.Namespace = f["namespace"].GetStringValue()
	}
	return s
}

// endpointMetaFrom reads filter_metadata.istio of an endpoint.
func endpointMetaFrom(md *corev3.Metadata) metrics.EndpointMeta {
	istio := md.GetFilterMetadata()["istio"].GetFields()
	return metrics.EndpointMeta{
		Workload:  istio["workload"].GetStringValue(),
		Namespace: istio["namespace"].GetStringValue(),
		Version:   istio["version"].GetStringValue(),
		App:       labelValue(istio["labels"], "app"),
	}
}

func labelValue(v *structpb.Value, key string) string {
	return v.GetStructValue().GetFields()[key].GetStringValue()
}

// healthy reports whether an endpoint with this status takes traffic (Envoy
// treats UNKNOWN as healthy).
func healthy(s corev3.HealthStatus) bool {
	switch s {
	case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
		return false
	}
	return true
}

// buildEndpoints turns a ClusterLoadAssignment into a balanced endpoint set
// of its healthy endpoints. Every locality and priority is flattened.
func buildEndpoints(cla *endpointv3.ClusterLoadAssignment, lb *upstream.LBConfig) (*upstream.EndpointSet, *fieldError) {
	var eps []*upstream.Endpoint
	var weights []uint32
	for i, lle := range cla.GetEndpoints() {
		for j, lbe := range lle.GetLbEndpoints() {
			field := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fieldErr(field+".endpoint.address", "only socket_address is supported")
			}
			if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				return nil, fieldErr(field+".endpoint.address.socket_address.port_value", "%d: must be 1-65535", sa.GetPortValue())
			}
			if net.ParseIP(sa.GetAddress()) == nil {
				return nil, fieldErr(field+".endpoint.address.socket_address.address", "%q: must be an IP address", sa.GetAddress())
			}
			w, ok := endpointWeight(lbe)
			if !ok {
				continue
			}
			eps = append(eps, &upstream.Endpoint{
				Addr:     net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))),
				Meta:     endpointMetaFrom(lbe.GetMetadata()),
				TLSMatch: lbe.GetMetadata().GetFilterMetadata()[upstream.TransportSocketMatchKey],
			})
			weights = append(weights, w)
		}
	}
	return upstream.NewBalancedSet(eps, weights, lb), nil
}

// endpointWeight is lbe's load_balancing_weight (1 when unset), or false
// when lbe takes no traffic: it is unhealthy or its weight is 0.
func endpointWeight(lbe *endpointv3.LbEndpoint) (uint32, bool) {
	if !healthy(lbe.GetHealthStatus()) {
		return 0, false
	}
	w := uint32(1)
	if lw := lbe.GetLoadBalancingWeight(); lw != nil {
		w = lw.GetValue()
	}
	return w, w != 0
}

// buildDNSTargets reads the inline addresses of a STRICT_DNS cluster.
func buildDNSTargets(cla *endpointv3.ClusterLoadAssignment) ([]upstream.DNSTarget, *fieldError) {
	var out []upstream.DNSTarget
	for i, lle := range cla.GetEndpoints() {
		for j, lbe := range lle.GetLbEndpoints() {
			field := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetAddress() == "" {
				return nil, fieldErr(field+".endpoint.address.socket_address", "a host name is required")
			}
			if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				return nil, fieldErr(field+".endpoint.address.socket_address.port_value", "%d: must be 1-65535", sa.GetPortValue())
			}
			w, ok := endpointWeight(lbe)
			if !ok {
				continue
			}
			out = append(out, upstream.DNSTarget{Host: sa.GetAddress(), Port: int(sa.GetPortValue()), Weight: w, Meta: endpointMetaFrom(lbe.GetMetadata())})
		}
	}
	// None is valid, as in Envoy: the cluster has no hosts (503 UH).
	return out, nil
}

// SortedKeys returns m's keys in order, for deterministic iteration.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package compiler

import (
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// TestGrpcGolden compiles each testdata/grpc*.yaml (a proxyless gRPC
// client's class) and compares with its golden file; TestGolden covers the
// same files, this runs them under -run Grpc.
func TestGrpcGolden(t *testing.T) {
	forEachCase(t, "testdata/grpc*.yaml", func(t *testing.T, f string, tc testCase) {
		if tc.class.Generator != nodemeta.GeneratorGRPC {
			t.Fatalf("class %+v: want generator %q", tc.class, nodemeta.GeneratorGRPC)
		}
		checkCompiledGolden(t, f, tc)
	})
}

// compileGrpc compiles testdata/grpc.yaml for a gRPC client in namespace
// ns and returns its listeners by name.
func compileGrpc(t *testing.T, ns string) (*Snapshot, map[string]*listenerv3.Listener) {
	t.Helper()
	tc := loadCase(t, "testdata/grpc.yaml")
	p, diags := Parse(splitObjects("testdata/grpc.yaml", tc.data))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	class := tc.class
	class.Namespace = ns
	snap, err := p.Compile(class, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*listenerv3.Listener{}
	for name, r := range snap.Resources.Resources[types.Listener].Items {
		out[name] = r.Resource.(*listenerv3.Listener)
	}
	return snap, out
}

// TestGrpcListenerNames checks which dial targets a client can use: the
// FQDN forms always, name.ns and name.ns.svc for cluster-local hosts, the
// bare name only in the client's own NAMESPACE (as Istio's grpc generator
// resolves short names), the forms without a port only for single-port
// services.
func TestGrpcListenerNames(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		want      []string
		wantNot   []string
	}{
		{
			name:      "client in default",
			namespace: "default",
			want: []string{
				"reviews.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local",
				"reviews:9080", "reviews", "reviews.default:9080", "reviews.default.svc:9080",
				"ratings.backend.svc.cluster.local:9090", "ratings.backend:9090", "ratings.backend.svc:8080",
				"geo.example.com:443", "geo.example.com",
			},
			wantNot: []string{"ratings:9090", "ratings.backend.svc.cluster.local", "geo:443"},
		},
		{
			name:      "client in backend",
			namespace: "backend",
			want:      []string{"ratings:9090", "ratings:8080", "reviews.default:9080", "reviews.default.svc.cluster.local:9080"},
			wantNot:   []string{"reviews:9080", "reviews", "ratings"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ls := compileGrpc(t, tt.namespace)
			wantListeners(t, ls, tt.want, tt.wantNot)
		})
	}
}

// TestGrpcResources checks the shape grpc-go requires (xdsresource's
// unmarshal code): API listeners only, an inline RouteConfiguration whose
// VirtualHost has the dial target as a domain, http_filters ending in the
// router, EDS clusters over ADS, and localities with a positive weight.
func TestGrpcResources(t *testing.T) {
	snap, ls := compileGrpc(t, "default")
	if len(ls) == 0 {
		t.Fatal("no listeners")
	}
	for name, l := range ls {
		if l.GetAddress() != nil || len(l.GetFilterChains()) > 0 || l.GetApiListener() == nil {
			t.Errorf("listener %s: want an API listener only, got %v", name, l)
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
			t.Fatalf("listener %s: %v", name, err)
		}
		filters := hcm.GetHttpFilters()
		if len(filters) == 0 || filters[len(filters)-1].GetName() != wellknown.Router {
			t.Errorf("listener %s: http_filters %v; want the router last", name, filters)
		}
		vhs := hcm.GetRouteConfig().GetVirtualHosts()
		if len(vhs) != 1 || !slices.Contains(vhs[0].GetDomains(), name) {
			t.Errorf("listener %s: virtual hosts %v; want one with domain %q", name, vhs, name)
		}
	}
	if n := len(snap.Resources.Resources[types.Route].Items); n != 0 {
		t.Errorf("got %d RouteConfigurations; want none (inline in the listeners)", n)
	}
	clas := snap.Resources.Resources[types.Endpoint].Items
	for name, r := range snap.Resources.Resources[types.Cluster].Items {
		c := r.Resource.(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("cluster %s: want EDS over ADS, got %v", name, c)
		}
		cla, ok := clas[c.GetEdsClusterConfig().GetServiceName()]
		if !ok {
			t.Errorf("cluster %s: no ClusterLoadAssignment", name)
			continue
		}
		for _, loc := range cla.Resource.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
			if loc.GetLocality() == nil || loc.GetLoadBalancingWeight().GetValue() == 0 {
				t.Errorf("cluster %s: locality %v has no locality or a zero weight", name, loc)
			}
		}
	}
}

// TestGrpcRoutesMatchSidecar checks that a gRPC client is routed exactly as
// a sidecar in the same namespace: each API listener's routes equal the
// routes of the sidecar's VirtualHost for the same service port, with the
// timeout where grpc-go reads it (grpcRoutes).
func TestGrpcRoutesMatchSidecar(t *testing.T) {
	_, ls := compileGrpc(t, "default")
	tc := loadCase(t, "testdata/grpc.yaml")
	p, _ := Parse(splitObjects("testdata/grpc.yaml", tc.data))
	side, err := p.Compile(nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Outbound: "127.0.0.1:15001"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := side.Resources.Resources[types.Route].Items[outboundName].Resource.(*routev3.RouteConfiguration)
	sidecar := map[string]*routev3.VirtualHost{}
	for _, vh := range out.GetVirtualHosts() {
		sidecar[vh.GetName()] = vh
	}
	for name, l := range ls {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		vh := hcm.GetRouteConfig().GetVirtualHosts()[0]
		want := sidecar[vh.GetName()]
		if want == nil {
			t.Errorf("listener %s: the sidecar has no virtual host %s", name, vh.GetName())
			continue
		}
		wantRoutes := grpcRoutes(proto.Clone(want).(*routev3.VirtualHost).GetRoutes())
		if !proto.Equal(&routev3.VirtualHost{Routes: vh.GetRoutes()}, &routev3.VirtualHost{Routes: wantRoutes}) {
			t.Errorf("listener %s: routes differ from the sidecar's:\n got %v\nwant %v", name, vh.GetRoutes(), want.GetRoutes())
		}
		if !slices.Equal(vh.GetDomains(), want.GetDomains()) {
			t.Errorf("listener %s: domains %v; the sidecar has %v", name, vh.GetDomains(), want.GetDomains())
		}
	}
}

// wantListeners checks that listeners has each name in want and none in
// wantNot.
func wantListeners[V any](t *testing.T, listeners map[string]V, want, wantNot []string) {
	t.Helper()
	for _, n := range want {
		if _, ok := listeners[n]; !ok {
			t.Errorf("no listener %q; have %v", n, sortedKeys(listeners))
		}
	}
	for _, n := range wantNot {
		if _, ok := listeners[n]; ok {
			t.Errorf("listener %q exists; want none", n)
		}
	}
}

// TestGrpcVisibility checks that exportTo and a Sidecar's egress hosts
// scope a gRPC client's listeners as they scope a sidecar's routes.
func TestGrpcVisibility(t *testing.T) {
	const policy = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: secret
  namespace: backend
spec:
  hosts: [secret]
  exportTo: ["."]
  ports: [{number: 9090, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
  namespace: backend
spec:
  hosts: [ratings]
  ports: [{number: 9090, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.2}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: only-default
  namespace: default
spec:
  workloadSelector:
    labels: {app: narrow}
  egress:
  - hosts: ["./*"]
`
	p, diags := Parse(splitObjects("visibility.yaml", []byte(policy)))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	tests := []struct {
		name    string
		class   nodemeta.ProxyClass
		want    []string
		wantNot []string
	}{
		{
			name:    "exportTo . hides a service from other namespaces",
			class:   nodemeta.ProxyClass{Generator: nodemeta.GeneratorGRPC, Namespace: "default"},
			want:    []string{"reviews:9080", "ratings.backend:9090"},
			wantNot: []string{"secret.backend:9090", "secret.backend.svc.cluster.local:9090"},
		},
		{
			name:  "exportTo . shows it in its own namespace",
			class: nodemeta.ProxyClass{Generator: nodemeta.GeneratorGRPC, Namespace: "backend"},
			want:  []string{"secret:9090", "ratings:9090", "reviews.default:9080"},
		},
		{
			name:    "a Sidecar's egress hosts apply to the gRPC client it selects",
			class:   nodemeta.ProxyClass{Generator: nodemeta.GeneratorGRPC, Namespace: "default", Labels: map[string]string{"app": "narrow"}},
			want:    []string{"reviews:9080"},
			wantNot: []string{"ratings.backend:9090"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := p.Compile(tt.class, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantListeners(t, snap.Resources.Resources[types.Listener].Items, tt.want, tt.wantNot)
		})
	}
}

// TestGrpcTimeout checks that a VirtualService timeout reaches grpc-go as
// max_stream_duration, and no timeout as 0 (none).
func TestGrpcTimeout(t *testing.T) {
	_, ls := compileGrpc(t, "default")
	hcm := &hcmv3.HttpConnectionManager{}
	if err := ls["reviews:9080"].GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"jason": 0, "split": 2 * time.Second}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		msd := r.GetRoute().GetMaxStreamDuration()
		if msd == nil || msd.GetMaxStreamDuration().AsDuration() != want[r.GetName()] {
			t.Errorf("route %s: max_stream_duration %v; want %s", r.GetName(), msd, want[r.GetName()])
		}
		if r.GetRoute().GetMaxGrpcTimeout() != nil {
			t.Errorf("route %s: max_grpc_timeout is set; grpc-go ignores it", r.GetName())
		}
	}
}

// TestGrpcLoadBalancer checks that a cluster keeps a load balancer grpc-go
// implements and falls back to ROUND_ROBIN for one it would NACK.
func TestGrpcLoadBalancer(t *testing.T) {
	const policy = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}, {address: 10.0.0.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: end-user}
`
	p, diags := Parse(splitObjects("lb.yaml", []byte(policy)))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(nodemeta.ProxyClass{Generator: nodemeta.GeneratorGRPC}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]clusterv3.Cluster_LbPolicy{
		"outbound|9080||reviews.default.svc.cluster.local":   clusterv3.Cluster_ROUND_ROBIN,
		"outbound|9080|v1|reviews.default.svc.cluster.local": clusterv3.Cluster_LEAST_REQUEST,
		"outbound|9080|v2|reviews.default.svc.cluster.local": clusterv3.Cluster_RING_HASH,
	}
	items := snap.Resources.Resources[types.Cluster].Items
	for name, lb := range want {
		r, ok := items[name]
		if !ok {
			t.Errorf("no cluster %s", name)
			continue
		}
		if got := r.Resource.(*clusterv3.Cluster).GetLbPolicy(); got != lb {
			t.Errorf("cluster %s: lb_policy %s; want %s", name, got, lb)
		}
	}
}

package compiler

import (
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/registry"
)

// TestFleetInputs checks which workloads FleetInputs keeps, and that
// compiling against them equals compiling against the whole fleet for
// every class (sidecar, gateway, proxyless gRPC): the workloads it leaves
// out change nothing.
func TestFleetInputs(t *testing.T) {
	const policy = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: backend}
spec:
  hosts: [ratings]
  ports: [{number: 9090, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.2}]
`
	web := &registry.Service{
		Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local",
		Selector: map[string]string{"app": "web"},
		Ports:    []registry.Port{{Name: "http", Number: 80, Protocol: registry.ProtocolHTTP, TargetPort: 8080}},
		Endpoints: []registry.Endpoint{
			{Address: "10.2.0.1", Ports: map[string]uint32{"http": 8080}, Ready: true, Workload: "web-1", Labels: map[string]string{"app": "web"}},
		},
	}
	reviews := map[string]string{"app": "reviews"}
	fleet := []nodemeta.Workload{
		{ID: "reviews-1", Namespace: "default", Labels: reviews, Inbound: "10.0.0.1:15006", App: "10.0.0.1:9080"},
		{ID: "reviews-no-inbound", Namespace: "default", Labels: reviews, Outbound: "127.0.0.1:15001"},
		{ID: "reviews-other-ns", Namespace: "backend", Labels: reviews, Inbound: "10.0.0.2:15006"},
		{ID: "client", Namespace: "default", Labels: map[string]string{"app": "client"}, Inbound: "10.0.0.3:15006", Outbound: "127.0.0.1:15001"},
		{ID: "reviews-grpc", Namespace: "default", Generator: nodemeta.GeneratorGRPC, Labels: reviews, Inbound: "10.0.0.4:15006"},
		{ID: "gateway", Role: nodemeta.RoleGateway, Namespace: "default", Labels: reviews, Inbound: "10.0.0.5:15006"},
		{ID: "web-1.shop", Namespace: "shop", Pod: "web-1", Interception: nodemeta.InterceptionRedirect, Labels: map[string]string{"app": "web"}, Inbound: "10.2.0.1:15006"},
		{ID: "capturing-elsewhere", Namespace: "default", Pod: "x", Interception: nodemeta.InterceptionRedirect},
	}
	p, diags := Parse(splitObjects("fleet.yaml", []byte(policy)), WithRegistry(registry.NewStatic([]*registry.Service{web}, nil)))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	var got []string
	for _, w := range p.FleetInputs(fleet) {
		got = append(got, w.ID)
	}
	if want := []string{"reviews-1", "web-1.shop"}; !slices.Equal(got, want) {
		t.Fatalf("FleetInputs kept %q; want %q", got, want)
	}
	if in := p.FleetInputs(fleet[1:4]); len(in) != 0 {
		t.Errorf("FleetInputs of workloads no service selects = %v; want none", in)
	}

	classes := []nodemeta.ProxyClass{
		{Namespace: "default", Outbound: "127.0.0.1:15001"},
		{Namespace: "shop", Outbound: "127.0.0.1:15001", Inbound: "10.2.0.1:15006", App: "10.2.0.1:8080"},
		{Generator: nodemeta.GeneratorGRPC, Namespace: "default"},
		{Role: nodemeta.RoleGateway, Namespace: "default"},
	}
	for _, class := range classes {
		t.Run(class.Key(), func(t *testing.T) {
			all, err := p.Compile(class, fleet)
			if err != nil {
				t.Fatal(err)
			}
			some, err := p.Compile(class, p.FleetInputs(fleet))
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range []types.ResponseType{types.Listener, types.Route, types.Cluster, types.Endpoint} {
				if a, s := all.Resources.Resources[typ].Version, some.Resources.Resources[typ].Version; a != s {
					t.Errorf("type %d: version %s with the whole fleet, %s with FleetInputs", typ, a, s)
				}
			}
			none, err := p.Compile(class, nil)
			if err != nil {
				t.Fatal(err)
			}
			if class.Generator == "" && class.Role == "" && none.Resources.Resources[types.Endpoint].Version == all.Resources.Resources[types.Endpoint].Version {
				t.Errorf("endpoints compiled without the fleet equal those with it: the case does not exercise the fleet")
			}
			if all.Version != some.Version {
				t.Errorf("version %s with the whole fleet, %s with FleetInputs", all.Version, some.Version)
			}
		})
	}
}

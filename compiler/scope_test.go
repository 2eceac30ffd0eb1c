package compiler

import (
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

const scopeEntries = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: b}
spec:
  hosts: [api.b.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.2.0.1}]
`

const scopeSidecar = `---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress: [{hosts: ["./*"]}]
`

// scopeRoute sends web's traffic to api, outside the Sidecar's egress
// hosts.
const scopeRoute = `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  http: [{route: [{destination: {host: api.b.svc.cluster.local}}]}]
`

// TestClusterScope: a sidecar gets the clusters and endpoints of the
// services its Sidecar's egress hosts select, plus those its routes
// reference; gateways get every cluster.
func TestClusterScope(t *testing.T) {
	const apiCluster = "outbound|80||api.b.svc.cluster.local"
	const webCluster = "outbound|80||web.a.svc.cluster.local"
	sidecar := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "a", Outbound: "127.0.0.1:15001"}
	gateway := nodemeta.ProxyClass{Role: nodemeta.RoleGateway, Namespace: "a"}
	for _, tc := range []struct {
		name    string
		src     string
		class   nodemeta.ProxyClass
		wantAPI bool
	}{
		{"sidecar without Sidecar", scopeEntries, sidecar, true},
		{"sidecar under Sidecar egress ./*", scopeEntries + scopeSidecar, sidecar, false},
		{"sidecar under Sidecar, routed to by a VirtualService", scopeEntries + scopeSidecar + scopeRoute, sidecar, true},
		{"gateway in a namespace with a Sidecar", scopeEntries + scopeSidecar, gateway, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := compileCase(t, splitObjects("scope.yaml", []byte(tc.src)), tc.class, nil)
			clusters := snap.Resources.Resources[types.Cluster].Items
			clas := snap.Resources.Resources[types.Endpoint].Items
			if _, ok := clusters[webCluster]; !ok {
				t.Errorf("cluster %s missing", webCluster)
			}
			_, gotCluster := clusters[apiCluster]
			cla, gotCLA := clas[apiCluster]
			if gotCluster != tc.wantAPI || gotCLA != tc.wantAPI {
				t.Fatalf("cluster %s present %t, its ClusterLoadAssignment present %t; want %t", apiCluster, gotCluster, gotCLA, tc.wantAPI)
			}
			if gotCLA && len(cla.Resource.(*endpointv3.ClusterLoadAssignment).GetEndpoints()) == 0 {
				t.Errorf("ClusterLoadAssignment %s has no endpoints", apiCluster)
			}
		})
	}
}

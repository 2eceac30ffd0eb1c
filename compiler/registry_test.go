package compiler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/registry"
)

// shopK8s is a repository laid out as Istio users lay it out: a
// Kubernetes Service and two Deployments (lines: Service at 1, v1 at 15,
// v2 at 27), no ServiceEntry.
const shopK8s = `apiVersion: v1
kind: Service
metadata:
  name: cart
  labels: {app: cart}
spec:
  selector: {app: cart}
  ports:
  - name: http-web
    port: 8080
    targetPort: web
  - port: 9100
    name: metrics
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-v1}
spec:
  selector: {matchLabels: {app: cart, version: v1}}
  template:
    metadata: {labels: {app: cart, version: v1}}
    spec:
      containers:
      - {name: cart, image: example.com/cart:1, ports: [{name: web, containerPort: 8081}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-v2}
spec:
  selector: {matchLabels: {app: cart, version: v2}}
  template:
    metadata: {labels: {app: cart, version: v2}}
    spec:
      containers:
      - {name: cart, image: example.com/cart:2, ports: [{name: web, containerPort: 8081}]}
---
`

// cartRules are a DestinationRule (line 1 of the fragment) and a
// VirtualService (line 10) for cart.
const cartRules = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart}
spec:
  host: cart
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart]
  http:
  - route:
    - {destination: {host: cart, subset: v1}, weight: 90}
    - {destination: {host: cart, subset: v2}, weight: 10}
---
`

// shopLines is the number of lines of shopK8s, to place diagnostics in
// what follows it.
var shopLines = strings.Count(shopK8s, "\n")

// vsIn is a VirtualService for host in namespace ns with an exportTo.
func vsIn(name, ns, host, exportTo, dest string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s, namespace: %s}
spec:
  hosts: [%s]
  exportTo: [%s]
  http:
  - route: [{destination: {host: %s}}]
---
`, name, ns, host, exportTo, dest)
}

// TestRegistryDiagnostics checks what Istio accepts from a repository
// with Kubernetes Services (no diagnostics at warning level or above) and
// what istioctl flags (the mirrored code at the right line).
func TestRegistryDiagnostics(t *testing.T) {
	at := func(code string, line int) string { return fmt.Sprintf("%s:%d", code, line) }
	tests := []struct {
		name string
		yaml string
		want []string // "CODE:line", sorted
	}{
		{
			name: "service and deployments with rules",
			yaml: shopK8s + cartRules,
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "kubernetes kinds are not unknown, other core kinds are",
			yaml: shopK8s + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cart}\n",
			want: []string{at(CodeUnknownKind, shopLines+2), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "subset selecting no declared workload",
			yaml: shopK8s + strings.Replace(cartRules, "{version: v2}", "{version: v3}", 1),
			want: []string{at(CodeSubsetSelectsNoWorkload, shopLines+8), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "service without declared workloads: subsets are not checked",
			yaml: shopK8s[:strings.Index(shopK8s, "---")+4] + strings.Replace(cartRules, "{version: v2}", "{version: v3}", 1),
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "two virtual services on a kubernetes service host conflict",
			yaml: shopK8s + cartRules + vsIn("cart-again", "default", "cart", `"*"`, "cart"),
			want: []string{at(CodeConflictingVirtualServices, shopLines+strings.Count(cartRules, "\n")+5), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "an undeclared host does not hide a conflict",
			yaml: vsIn("a", "default", "ghost", `"*"`, "ghost.example.com") + vsIn("b", "default", "ghost", `"*"`, "ghost.example.com"),
			want: []string{at(CodeUnusedVirtualServiceHost, 5), at(CodeUnknownHost, 8), at(CodeConflictingVirtualServices, 14), at(CodeUnknownHost, 17)},
		},
		{
			name: "an undeclared host does not hide two destination rules",
			yaml: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: ghost}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b}\nspec: {host: ghost}\n",
			want: []string{at(CodeUnusedDestinationRule, 4), at(CodeConflictingDestinationRules, 9)},
		},
		{
			name: "a workload entry a service selects",
			yaml: shopK8s + "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: cart-vm}\nspec: {address: 10.0.0.9, labels: {app: cart, version: v1}}\n",
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "exportTo dot in two namespaces: no conflict (IST0109)",
			yaml: shopK8s + vsIn("cart", "default", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local") +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local"),
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "exportTo dot and exported to all: conflict",
			yaml: shopK8s + vsIn("cart", "default", "cart", `"."`, "cart") +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"*"`, "cart.default.svc.cluster.local"),
			want: []string{at(CodeConflictingVirtualServices, shopLines+14), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "exportTo lists sharing a namespace: conflict",
			yaml: shopK8s + vsIn("cart", "default", "cart", `".", "web"`, "cart") +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"web"`, "cart.default.svc.cluster.local"),
			want: []string{at(CodeConflictingVirtualServices, shopLines+14), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "service exported to its namespace, routed from another (IST0101)",
			yaml: strings.Replace(shopK8s, "  labels: {app: cart}\n", "  annotations: {networking.istio.io/exportTo: \".\"}\n", 1) +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local"),
			want: []string{at(CodePortProtocolDetected, 13), at(CodeUnknownHost, shopLines+8)},
		},
		{
			name: "service exported to the routing namespace",
			yaml: strings.Replace(shopK8s, "  labels: {app: cart}\n", "  annotations: {networking.istio.io/exportTo: \"., tools\"}\n", 1) +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local"),
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "virtual service exported where the service is",
			yaml: strings.Replace(shopK8s, "  labels: {app: cart}\n", "  annotations: {networking.istio.io/exportTo: \".\"}\n", 1) +
				vsIn("cart", "tools", "cart.default.svc.cluster.local", `"default"`, "cart.default.svc.cluster.local"),
			want: []string{at(CodePortProtocolDetected, 13)},
		},
		{
			name: "service entry exported elsewhere (IST0101)",
			yaml: "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: pay, namespace: payments}\nspec:\n  hosts: [pay.example.com]\n  exportTo: [\".\"]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n---\n" +
				vsIn("pay", "default", "pay.example.com", `"*"`, "pay.example.com"),
			want: []string{at(CodeUnknownHost, 17)},
		},
		{
			name: "service entry shadowed by a kubernetes service",
			yaml: shopK8s + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: cart}\nspec:\n  hosts: [cart.default.svc.cluster.local]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n",
			want: []string{at(CodeShadowedServiceEntryHost, shopLines+5), at(CodePortProtocolDetected, 13)},
		},
		{
			name: "service that does not decode",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: 80\n",
			want: []string{at(CodeInvalidValue, 4)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			var got []string
			for _, d := range diags {
				got = append(got, at(d.Code, d.Origin.Line))
			}
			sort.Strings(got)
			sort.Strings(tt.want)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got diagnostics\n%s\nwant %v", diags, tt.want)
			}
		})
	}
}

// TestRegistryCompile compiles the Kubernetes layout for a client sidecar
// with sidecars announcing cart's pods' labels: cart's clusters have the
// sidecars the Service selects as endpoints, split by subset, and the
// VirtualService's weights route between them.
func TestRegistryCompile(t *testing.T) {
	p, diags := Parse(splitObjects("case.yaml", []byte(shopK8s+cartRules)))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	fleet := []nodemeta.Workload{
		{ID: "cart-v1-a", Namespace: "default", Labels: map[string]string{"app": "cart", "version": "v1"}, Inbound: "127.0.0.1:15001"},
		{ID: "cart-v2-a", Namespace: "default", Labels: map[string]string{"app": "cart", "version": "v2"}, Inbound: "127.0.0.1:15002"},
		{ID: "other", Namespace: "tools", Labels: map[string]string{"app": "cart", "version": "v1"}, Inbound: "127.0.0.1:15003"},
		{ID: "web", Namespace: "default", Labels: map[string]string{"app": "web"}, Inbound: "127.0.0.1:15004"},
	}
	snap, err := p.Compile(nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Outbound: "127.0.0.1:15000"}, fleet)
	if err != nil {
		t.Fatal(err)
	}
	eps := map[string][]string{}
	for name, r := range snap.Resources.GetResources(resourcev3.EndpointType) {
		for _, loc := range r.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				a := lb.GetEndpoint().GetAddress().GetSocketAddress()
				eps[name] = append(eps[name], fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue()))
			}
		}
	}
	wantEps := map[string]string{
		"outbound|8080||cart.default.svc.cluster.local":   "127.0.0.1:15001 127.0.0.1:15002",
		"outbound|8080|v1|cart.default.svc.cluster.local": "127.0.0.1:15001",
		"outbound|8080|v2|cart.default.svc.cluster.local": "127.0.0.1:15002",
		"outbound|9100|v2|cart.default.svc.cluster.local": "127.0.0.1:15002",
	}
	for name, want := range wantEps {
		if got := strings.Join(eps[name], " "); got != want {
			t.Errorf("endpoints of %s: got %q; want %q", name, got, want)
		}
	}
	rc := snap.Resources.GetResources(resourcev3.RouteType)[outboundName].(*routev3.RouteConfiguration)
	var weights []string
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != "cart.default.svc.cluster.local:8080" {
			continue
		}
		for _, wc := range vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
			weights = append(weights, fmt.Sprintf("%s=%d", wc.GetName(), wc.GetWeight().GetValue()))
		}
	}
	want := "outbound|8080|v1|cart.default.svc.cluster.local=90 outbound|8080|v2|cart.default.svc.cluster.local=10"
	if got := strings.Join(weights, " "); got != want {
		t.Errorf("cart:8080 weighted clusters: got %q; want %q", got, want)
	}
}

// TestRegistryCompileExportTo compiles two VirtualServices for one host,
// each exported to its own namespace: each namespace's sidecars route by
// their own, and a namespace that sees neither gets the default route.
func TestRegistryCompileExportTo(t *testing.T) {
	yaml := shopK8s + cartRules[:strings.Index(cartRules, "---")+4] +
		strings.Replace(vsIn("cart", "default", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local"), "host: cart.default.svc.cluster.local}", "host: cart.default.svc.cluster.local, subset: v1}", 1) +
		strings.Replace(vsIn("cart", "tools", "cart.default.svc.cluster.local", `"."`, "cart.default.svc.cluster.local"), "host: cart.default.svc.cluster.local}", "host: cart.default.svc.cluster.local, subset: v2}", 1)
	p, diags := Parse(splitObjects("case.yaml", []byte(yaml)))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		ns   string
		want string
	}{
		{"default", "outbound|8080|v1|cart.default.svc.cluster.local"},
		{"tools", "outbound|8080|v2|cart.default.svc.cluster.local"},
		{"web", "outbound|8080||cart.default.svc.cluster.local"},
	}
	for _, tt := range tests {
		t.Run(tt.ns, func(t *testing.T) {
			snap, err := p.Compile(nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: tt.ns, Outbound: "127.0.0.1:15000"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := routeCluster(snap.Resources.GetResources(resourcev3.RouteType), "cart.default.svc.cluster.local:8080"); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// routeCluster returns the cluster of the first route of a virtual host
// of the outbound RouteConfiguration.
func routeCluster(routes map[string]types.Resource, vhost string) string {
	rc, _ := routes[outboundName].(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == vhost {
			return vh.GetRoutes()[0].GetRoute().GetCluster()
		}
	}
	return ""
}

// TestWithRegistry parses with a registry fed from elsewhere (as the
// Kubernetes mode will): its services are hosts, and the revision's
// Kubernetes objects are not read.
func TestWithRegistry(t *testing.T) {
	reg := registry.NewStatic([]*registry.Service{{
		Hostname: "cart.default.svc.cluster.local", Name: "cart", Namespace: "default", Source: registry.SourceKubernetes,
		Ports:     []registry.Port{{Name: "http", Number: 8080, Protocol: registry.ProtocolHTTP}},
		Selector:  map[string]string{"app": "cart"},
		Endpoints: []registry.Endpoint{{Address: "10.1.0.1", Ready: true, Workload: "cart-0"}, {Address: "10.1.0.2", Workload: "cart-1"}},
	}}, nil)
	// The pod's own sidecar is connected and matches the selector: in
	// Kubernetes mode it is the EndpointSlice's endpoint already, not a
	// second instance.
	fleet := []nodemeta.Workload{{ID: "cart-0.default", Role: nodemeta.RoleSidecar, Namespace: "default", Labels: map[string]string{"app": "cart"}, Inbound: "10.1.0.1:15006"}}
	p, diags := Parse(splitObjects("case.yaml", []byte(shopK8s+vsIn("cart", "default", "cart", `"*"`, "cart"))), WithRegistry(reg))
	if len(diags) != 0 {
		t.Fatalf("want no diagnostics, got\n%s", diags)
	}
	snap, err := p.Compile(nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Outbound: "127.0.0.1:15000"}, fleet)
	if err != nil {
		t.Fatal(err)
	}
	cla, _ := snap.Resources.GetResources(resourcev3.EndpointType)["outbound|8080||cart.default.svc.cluster.local"].(*endpointv3.ClusterLoadAssignment)
	if n := len(cla.GetEndpoints()); n != 1 || len(cla.GetEndpoints()[0].GetLbEndpoints()) != 1 {
		t.Fatalf("want the one ready endpoint (not the sidecar again), got %v", cla)
	}
	if _, ok := snap.Resources.GetResources(resourcev3.ClusterType)["outbound|9100||cart.default.svc.cluster.local"]; ok {
		t.Error("the revision's Service was read despite WithRegistry")
	}
}

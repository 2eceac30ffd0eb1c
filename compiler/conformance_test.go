package compiler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// These tests follow issue 9 (Istio conformance): what Istio accepts
// validates without errors and compiles; what istioctl flags gets the
// mirrored GM code at the right line. The YAML is our own.

// httpbin declares httpbin (one HTTP port, subsets v1/v2) in default.
const httpbin = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  ports: [{number: 8000, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
`

// ingress is a Gateway for the ingress proxies on port 80.
func ingress(name, ns string, hosts ...string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: %s}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [%s]
---
`, name, ns, `"`+strings.Join(hosts, `", "`)+`"`)
}

var gatewayClass = nodemeta.ProxyClass{
	Role: nodemeta.RoleGateway, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"},
	Gateway: []string{"127.0.0.1:80"},
}

// TestIstioAccepts: Istio accepts each case; gitmesh must report no
// error and compile it for a sidecar and an ingress gateway. want lists
// the warnings expected ("CODE line").
func TestIstioAccepts(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"weights that do not sum to 100", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 70}
    - {destination: {host: httpbin, subset: v2}, weight: 20}
`, []string{"GM0203 warning 25"}},
		{"weights above 100", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 150}
    - {destination: {host: httpbin, subset: v2}, weight: 50}
`, []string{"GM0203 warning 25"}},
		{"one destination with any weight", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}, weight: 30}]
`, nil},
		{"upper case hosts", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [HTTPBin.default.svc.cluster.local]
  http:
  - route: [{destination: {host: HttpBin}}]
`, nil},
		{"service entry without ports", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any-google}
spec:
  hosts: ["*.google.com"]
  location: MESH_EXTERNAL
  resolution: NONE
`, nil},
		{"workload entry with a DNS address", `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
  address: vm1.corp.example.com
  labels: {app: legacy}
`, []string{"GM0211 info 6"}},
		{"wildcard service entry and destination", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki}
spec:
  hosts: ["*.wikipedia.org"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wiki}
spec:
  hosts: ["*.wikipedia.org"]
  http:
  - timeout: 5s
    route: [{destination: {host: en.wikipedia.org}}]
`, nil},
		{"mesh-wide DestinationRule defaults", httpbin + `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: defaults, namespace: istio-system}
spec:
  host: "*.svc.cluster.local"
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: local, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}
`, nil},
		{"overlapping gateway hosts are merged", httpbin + ingress("wild", "istio-system", "*") + ingress("www", "istio-system", "www.example.com") +
			ingress("apps", "istio-system", "*.example.com") + ingress("api", "istio-system", "api.example.com") + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: www}
spec:
  hosts: [www.example.com]
  gateways: [istio-system/wild, istio-system/www]
  http:
  - route: [{destination: {host: httpbin}}]
`, nil},
		{"one host in common per gateway", httpbin + ingress("www", "istio-system", "www.example.com") + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: www}
spec:
  hosts: [www.example.com, api.example.com]
  gateways: [istio-system/www]
  http:
  - route: [{destination: {host: httpbin}}]
`, nil},
		{"namespace-scoped gateway hosts", httpbin + ingress("any", "istio-system", "*/*") + ingress("mine", "istio-system", "default/*") +
			ingress("here", "default", "./www.example.com") + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: www}
spec:
  hosts: [www.example.com]
  gateways: [istio-system/any, istio-system/mine, here]
  http:
  - route: [{destination: {host: httpbin}}]
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			if got := diagLines(diags); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
			for _, class := range []nodemeta.ProxyClass{nodemeta.SidecarClass("default", ""), gatewayClass} {
				if _, err := p.Compile(class, nil); err != nil {
					t.Errorf("compiling for %s: %v", class.Role, err)
				}
			}
		})
	}
}

// TestIstioFlags: istioctl (or Istio's validation) flags each case; gitmesh
// reports the mirrored code at the same line, once, without follow-ons.
func TestIstioFlags(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "CODE severity line", sorted by line
	}{
		{"negative weight", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 110}
    - {destination: {host: httpbin, subset: v2}, weight: -10}
`, []string{"GM0203 error 27"}},
		{"all weights zero", httpbin + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 0}
    - {destination: {host: httpbin, subset: v2}}
`, []string{"GM0203 error 25"}},
		{"identical gateway host (IST0145)", ingress("a", "istio-system", "www.example.com") + ingress("b", "istio-system", "api.example.com", "www.example.com"),
			[]string{"GM0304 error 17"}},
		{"gateway without a host in common (IST0132)", httpbin + ingress("www", "istio-system", "www.example.com") + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  gateways:
  - mesh
  - istio-system/www
  http:
  - route: [{destination: {host: httpbin}}]
`, []string{"GM0209 warning 32", "GM0303 warning 35"}},
		{"resolution NONE with endpoints", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: [x.example.com]
  ports: [{number: 80, name: http}]
  resolution: NONE
  endpoints: [{address: 10.0.0.1}]
`, []string{"GM0114 error 8"}},
		{"wildcard in a workloadSelector", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: [x.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  workloadSelector:
    labels:
      app: "*"
`, []string{"GM0102 error 10"}},
		{"invalid label value", `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
  address: 10.0.0.2
  labels:
    version: "v1 beta"
`, []string{"GM0211 info 6", "GM0102 error 7"}},
		{"invalid port name", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: [x.example.com]
  ports:
  - number: 80
    name: http_web
  resolution: DNS
`, []string{"GM0102 error 8"}},
		{"full wildcard service entry host", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: ["*"]
  resolution: NONE
`, []string{"GM0112 error 5"}},
		{"wildcard DNS host without endpoints", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http}]
  resolution: DNS
`, []string{"GM0112 error 5"}},
		{"tcp rule after a catch-all (IST0130)", tcpService + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - route: [{destination: {host: db}}]
  - match: [{port: 5432}]
    route: [{destination: {host: db}}]
`, []string{"GM0301 warning 17"}},
		{"repeated tcp match (IST0130/IST0131)", tcpService + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432, sourceNamespace: a}]
    route: [{destination: {host: db}}]
  - match: [{port: 5432, sourceNamespace: a}]
    route: [{destination: {host: db}}]
  - match: [{port: 5432, sourceNamespace: a}, {port: 5432, sourceNamespace: b}]
    route: [{destination: {host: db}}]
`, []string{"GM0301 warning 18", "GM0302 warning 20"}},
		{"unsupported port protocol is the only cause", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay}
spec:
  hosts: [pay.example.com]
  ports:
  - {number: 80, name: http}
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pay}
spec:
  hosts: [pay.example.com]
  http:
  - route: [{destination: {host: pay.example.com, port: {number: 443}}}]
`, []string{"GM0113 error 8"}},
		{"unsupported resolution is the only cause", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay}
spec:
  hosts: [pay.example.com]
  ports: [{number: 80, name: http}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pay}
spec:
  hosts: [pay.example.com]
  http:
  - route: [{destination: {host: pay.example.com}}]
`, []string{"GM0113 error 7"}},
		{"unsupported TLS server and tls route are the only causes", httpbin + `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: passthrough, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [secure.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/passthrough]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: httpbin}}]
`, []string{"GM0113 error 25", "GM0104 error 35"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			if got := diagLines(diags); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

const tcpService = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.2.0.1}]
---
`

// diagLines renders diagnostics as "CODE severity line" in their order.
func diagLines(diags Diagnostics) []string {
	var out []string
	for _, d := range diags {
		out = append(out, fmt.Sprintf("%s %s %d", d.Code, d.Severity, d.Origin.Line))
	}
	return out
}

// TestRelativeWeightsCompile: weights are passed to Envoy as written (it
// splits in proportion to them), as Istio does; a 0 weight is left out.
func TestRelativeWeightsCompile(t *testing.T) {
	objs := splitObjects("case.yaml", []byte(httpbin+`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 150}
    - {destination: {host: httpbin, subset: v2}, weight: 50}
    - {destination: {host: httpbin}, weight: 0}
`))
	snap := compileCase(t, objs, nodemeta.SidecarClass("default", ""), nil)
	var got []string
	for _, res := range snap.Resources.Resources[types.Route].Items {
		rc := res.Resource.(*routev3.RouteConfiguration)
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
					got = append(got, fmt.Sprintf("%s=%d", c.GetName(), c.GetWeight().GetValue()))
				}
			}
		}
	}
	sort.Strings(got)
	want := "outbound|8000|v1|httpbin.default.svc.cluster.local=150 outbound|8000|v2|httpbin.default.svc.cluster.local=50"
	if strings.Join(got, " ") != want {
		t.Errorf("weighted clusters = %v; want %s", got, want)
	}
}

// TestWildcardDefaultsCompile: a DestinationRule for *.svc.cluster.local
// is the default of every local service without its own DestinationRule;
// a more specific one wins.
func TestWildcardDefaultsCompile(t *testing.T) {
	objs := splitObjects("case.yaml", []byte(httpbin+tcpService+`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: defaults, namespace: istio-system}
spec:
  host: "*.svc.cluster.local"
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all}
spec:
  host: "*"
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
`))
	snap := compileCase(t, objs, nodemeta.SidecarClass("default", ""), nil)
	got := map[string]clusterv3.Cluster_LbPolicy{}
	for name, res := range snap.Resources.Resources[types.Cluster].Items {
		got[name] = res.Resource.(*clusterv3.Cluster).GetLbPolicy()
	}
	for name, want := range map[string]clusterv3.Cluster_LbPolicy{
		"outbound|5432||db.default.svc.cluster.local":        clusterv3.Cluster_LEAST_REQUEST,
		"outbound|8000|v1|httpbin.default.svc.cluster.local": clusterv3.Cluster_ROUND_ROBIN, // its own DestinationRule
	} {
		if got[name] != want {
			t.Errorf("%s: lb policy %v; want %v (all: %v)", name, got[name], want, got)
		}
	}
}

// TestWildcardHostsCompile: a sidecar VirtualService for a wildcard host
// routes the wildcard ServiceEntry's traffic, and a destination named by a
// host the wildcard covers goes to that ServiceEntry's cluster.
func TestWildcardHostsCompile(t *testing.T) {
	objs := splitObjects("case.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki}
spec:
  hosts: ["*.Wikipedia.org"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wiki}
spec:
  hosts: ["*.wikipedia.org"]
  http:
  - timeout: 5s
    route: [{destination: {host: en.wikipedia.org}}]
`))
	snap := compileCase(t, objs, nodemeta.SidecarClass("default", ""), nil)
	var got []string
	for _, res := range snap.Resources.Resources[types.Route].Items {
		for _, vh := range res.Resource.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				got = append(got, fmt.Sprintf("%s %v -> %s timeout=%s", vh.GetName(), vh.GetDomains(), r.GetRoute().GetCluster(), r.GetRoute().GetTimeout().AsDuration()))
			}
		}
	}
	want := "*.wikipedia.org:80 [*.wikipedia.org *.wikipedia.org:80] -> outbound|80||*.wikipedia.org timeout=5s"
	if len(got) != 1 || got[0] != want {
		t.Errorf("routes = %q; want [%q]", got, want)
	}
}

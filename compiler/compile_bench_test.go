package compiler

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/sources"
)

func globFiles(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// benchPolicy is n services, each with a ServiceEntry (workloadSelector),
// a DestinationRule (v1, v2) and a VirtualService (header match, 90/10
// split), and a fleet of two sidecars per service.
func benchPolicy(n int) ([]sources.Object, []nodemeta.Workload) {
	var b strings.Builder
	var fleet []nodemeta.Workload
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc%[1]d}
spec:
  hosts: [svc%[1]d]
  ports: [{number: 8080, name: http}, {number: 9090, name: grpc}]
  resolution: STATIC
  workloadSelector: {labels: {app: svc%[1]d}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc%[1]d}
spec:
  host: svc%[1]d
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc%[1]d}
spec:
  hosts: [svc%[1]d]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: svc%[1]d, subset: v2}}]
  - route:
    - {destination: {host: svc%[1]d, subset: v1}, weight: 90}
    - {destination: {host: svc%[1]d, subset: v2}, weight: 10}
---
`, i)
		for v := 1; v <= 2; v++ {
			fleet = append(fleet, nodemeta.Workload{
				ID: fmt.Sprintf("svc%d-v%d", i, v), Service: fmt.Sprintf("svc%d", i), Role: nodemeta.RoleSidecar,
				Labels:  map[string]string{"app": fmt.Sprintf("svc%d", i), "version": fmt.Sprintf("v%d", v)},
				Inbound: fmt.Sprintf("10.0.%d.%d:15006", i, v),
			})
		}
	}
	return splitObjects("bench.yaml", []byte(b.String())), fleet
}

var benchClass = nodemeta.ProxyClass{
	Role: nodemeta.RoleSidecar, Namespace: "default", Service: "svc0",
	Outbound: "127.0.0.1:15001", Inbound: "127.0.0.1:15006", App: "127.0.0.1:8080",
}

// BenchmarkCompile compiles 50 services for one sidecar class.
func BenchmarkCompile(b *testing.B) {
	objs, fleet := benchPolicy(50)
	p, diags := Parse(objs)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Compile(benchClass, fleet); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse parses and validates the 150 objects of 50 services.
func BenchmarkParse(b *testing.B) {
	objs, _ := benchPolicy(50)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, diags := Parse(objs); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

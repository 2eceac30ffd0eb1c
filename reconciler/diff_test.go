package reconciler

import (
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// compileFor parses YAML documents (separated by "---") and compiles them
// for one sidecar class.
func compileFor(t *testing.T, docs string) map[string]*compiler.Snapshot {
	t.Helper()
	var objs []sources.Object
	for i, d := range strings.Split(docs, "---\n") {
		kind := strings.TrimSpace(strings.SplitN(strings.SplitN(d, "kind: ", 2)[1], "\n", 2)[0])
		objs = append(objs, sources.Object{APIVersion: "networking.istio.io/v1", Kind: kind, Name: kind, YAML: []byte(d), Origin: sources.Origin{File: "p.yaml", Line: i + 1}})
	}
	p, diags := compiler.Parse(objs)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	class := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Service: "c", Outbound: "127.0.0.1:15001"}
	snap, err := p.Compile(class, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*compiler.Snapshot{class.Key(): snap}
}

const diffBase = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}}
  - {address: 127.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
`

func TestDiffClasses(t *testing.T) {
	base := compileFor(t, diffBase)
	tests := []struct {
		name, docs, want string
	}{
		{name: "same policy", docs: diffBase, want: "none"},
		{name: "comment only", docs: strings.Replace(diffBase, "kind: VirtualService\n", "kind: VirtualService\n# a comment\n", 1), want: "none"},
		{name: "route to another subset", docs: strings.Replace(diffBase, "subset: v1}}]", "subset: v2}}]", 1), want: "routes +0 ~1 -0"},
		{name: "an endpoint leaves", docs: strings.Replace(diffBase, "  - {address: 127.0.0.2, labels: {version: v2}}\n", "", 1), want: "endpoints +0 ~2 -0"}, // the whole service and its v2 subset
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diffClasses(base, compileFor(t, tc.docs)).String()
			if got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
	if got := diffClasses(base, nil).String(); !strings.Contains(got, "-") || got == "none" {
		t.Errorf("a class that went away: got %q; want its resources removed", got)
	}
}

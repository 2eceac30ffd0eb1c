package reconciler

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// TestCompileOnlyForFleetInputs connects nodes one by one and checks when
// served.compile recompiles its classes: not for nodes no service selects
// (a fleet of clients connecting costs no compile), but for a node a
// ServiceEntry's workloadSelector picks, whose endpoint it adds.
func TestCompileOnlyForFleetInputs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	const policy = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`
	if err := os.WriteFile(filepath.Join(dir, "policy", "reviews.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, problems, err := sources.Build(dir, "policy")
	if err != nil || len(problems) > 0 {
		t.Fatalf("building the policy: %v %v", err, problems)
	}
	p, diags := compiler.Parse(objs)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	s := newServed("r1", objs, p)
	client := func(i int) xds.NodeStatus {
		return xds.NodeStatus{Connected: true, Workload: nodemeta.Workload{
			ID: fmt.Sprintf("client-%d", i), Service: "client", Namespace: "default",
			Labels: map[string]string{"app": "client"}, Outbound: "127.0.0.1:15001",
		}}
	}
	reviews := xds.NodeStatus{Connected: true, Workload: nodemeta.Workload{
		ID: "reviews-1", Service: "reviews", Namespace: "default",
		Labels: map[string]string{"app": "reviews"}, Inbound: "10.0.0.1:15006", App: "10.0.0.1:9080",
	}}
	probe := nodemeta.SidecarClass("default", "")

	var nodes []xds.NodeStatus
	steps := []struct {
		name      string
		node      xds.NodeStatus
		recompile bool
	}{
		{"first client", client(1), true}, // a new class
		{"second client of the class", client(2), false},
		{"third client of the class", client(3), false},
		{"a selected workload", reviews, true},
		{"a client after it", client(4), false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := s.classes[probe.Key()]
			key := s.fleetKey
			nodes = append(nodes, st.node)
			if err := s.compile(nodes, workloads(nodes), probe); err != nil {
				t.Fatal(err)
			}
			recompiled := s.fleetKey != key || before == nil
			if recompiled != st.recompile {
				t.Errorf("recompiled = %t; want %t", recompiled, st.recompile)
			}
			if s.snapshot(st.node) == nil {
				t.Errorf("no snapshot for %s's class", st.node.Workload.ID)
			}
		})
	}
}

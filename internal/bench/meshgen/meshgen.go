// Package meshgen writes the synthetic meshes gitmesh's benchmarks compile
// and serve: n services, each a ServiceEntry with 3 static endpoints, a
// DestinationRule with 2 subsets and a VirtualService with 3 routes, one
// file per service so a change to one service is a change to one file, as
// in a policy repository.
//
// It imports neither the compiler nor the controller, so the compiler's own
// benchmarks (package compiler_test) and the harness share it.
package meshgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gitmesh/gitmesh/sources"
)

// Namespace is the namespace every generated object lives in.
const Namespace = "default"

// Host returns service i's short host name.
func Host(i int) string { return fmt.Sprintf("svc%05d", i) }

// File returns the path of service i's file relative to the policy
// directory.
func File(i int) string { return Host(i) + ".yaml" }

// Service returns the YAML of service i. gen is the VirtualService's
// generation: two generations differ in exactly one route (the first
// route's header match), so a new gen is a "one route changed" edit.
func Service(i, gen int) []byte {
	h := Host(i)
	a, b := i/250, i%250
	var s strings.Builder
	fmt.Fprintf(&s, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.%[3]d.%[4]d.1, labels: {version: v1}}
  - {address: 10.%[3]d.%[4]d.2, labels: {version: v1}}
  - {address: 10.%[3]d.%[4]d.3, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  host: %[1]s.%[2]s.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  http:
  - name: canary
    match: [{headers: {x-canary: {exact: "gen-%[5]d"}}}]
    route: [{destination: {host: %[1]s.%[2]s.svc.cluster.local, subset: v2}}]
  - name: api
    match: [{uri: {prefix: /api}}]
    timeout: 3s
    route: [{destination: {host: %[1]s.%[2]s.svc.cluster.local, subset: v1}}]
  - name: default
    route:
    - {destination: {host: %[1]s.%[2]s.svc.cluster.local, subset: v1}, weight: 90}
    - {destination: {host: %[1]s.%[2]s.svc.cluster.local, subset: v2}, weight: 10}
`, h, Namespace, 1+a, b, gen)
	return []byte(s.String())
}

// Write writes n services of generation gen into dir (created if needed).
func Write(dir string, n, gen int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, File(i)), Service(i, gen), 0o644); err != nil {
			return fmt.Errorf("writing service %d: %w", i, err)
		}
	}
	return nil
}

// Objects builds n services of generation gen into objects with
// sources.Build (the controller's build step), through files in a
// temporary directory under tmp that it removes.
func Objects(tmp string, n, gen int) ([]sources.Object, error) {
	dir, err := os.MkdirTemp(tmp, "meshgen-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := Write(filepath.Join(dir, "policy"), n, gen); err != nil {
		return nil, err
	}
	objs, problems, err := sources.Build(dir, "policy")
	if err != nil {
		return nil, fmt.Errorf("building the mesh: %w", err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("building the mesh: %d problems, first: %v", len(problems), problems[0])
	}
	return objs, nil
}

// Replace returns a copy of objs in which service i's VirtualService is
// that of generation gen: the objects the reconciler parses after a commit
// that changed one VirtualService.
func Replace(tmp string, objs []sources.Object, i, gen int) ([]sources.Object, error) {
	dir, err := os.MkdirTemp(tmp, "meshgen-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	pol := filepath.Join(dir, "policy")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", pol, err)
	}
	if err := os.WriteFile(filepath.Join(pol, File(i)), Service(i, gen), 0o644); err != nil {
		return nil, fmt.Errorf("writing service %d: %w", i, err)
	}
	one, _, err := sources.Build(dir, "policy")
	if err != nil {
		return nil, fmt.Errorf("building service %d: %w", i, err)
	}
	out := append([]sources.Object(nil), objs...)
	for _, o := range one {
		if o.Kind != "VirtualService" {
			continue
		}
		for k := range out {
			if out[k].Kind == o.Kind && out[k].Name == o.Name && out[k].Namespace == o.Namespace {
				out[k] = o
				return out, nil
			}
		}
	}
	return nil, fmt.Errorf("service %d's VirtualService is not among the objects", i)
}

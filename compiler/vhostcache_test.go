package compiler_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
	"github.com/gitmesh/gitmesh/sources"
)

// TestRecompileMatchesCold compiles a mesh with a Cache, then revisions
// that each change one thing a VirtualHost of the outbound
// RouteConfiguration reads, and checks every recompile against a cold
// compile of the same revision: same version, same resource versions and
// the same encoding of every resource.
func TestRecompileMatchesCold(t *testing.T) {
	const n = 30
	base, err := meshgen.Objects(t.TempDir(), n, 0)
	if err != nil {
		t.Fatal(err)
	}
	more, err := meshgen.Objects(t.TempDir(), n+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// edit returns base with the object of kind and service i edited.
	edit := func(kind string, i int, from, to string) []sources.Object {
		t.Helper()
		out := slices.Clone(base)
		for j := range out {
			o := &out[j]
			if o.Kind == kind && o.Name == meshgen.Host(i) {
				if !bytes.Contains(o.YAML, []byte(from)) {
					t.Fatalf("%s %s has no %q", kind, o.Name, from)
				}
				o.YAML = []byte(strings.Replace(string(o.YAML), from, to, 1))
				return out
			}
		}
		t.Fatalf("no %s %s", kind, meshgen.Host(i))
		return nil
	}
	without := func(kind string, i int) []sources.Object {
		return slices.DeleteFunc(slices.Clone(base), func(o sources.Object) bool {
			return o.Kind == kind && o.Name == meshgen.Host(i)
		})
	}
	revisions := []struct {
		name string
		objs []sources.Object
	}{
		{"base", base},
		{"route weights", edit("VirtualService", 3, "weight: 90", "weight: 70")},
		{"route weights again", edit("VirtualService", 3, "weight: 90", "weight: 60")},
		{"new host", more},
		{"deleted VirtualService", without("VirtualService", 5)},
		{"subset labels", edit("DestinationRule", 7, "{version: v2}", "{version: v3}")},
		{"subset removed", edit("DestinationRule", 8, "  - {name: v2, labels: {version: v2}}\n", "")},
		{"consistent hash", edit("DestinationRule", 9, "  subsets:\n", "  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}\n  subsets:\n")},
		{"subset hash", edit("DestinationRule", 9, "{name: v1, labels: {version: v1}}", "{name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-v1}}}}")},
		{"base again", base},
	}
	compile := func(t *testing.T, objs []sources.Object, opts ...compiler.Option) *compiler.Snapshot {
		t.Helper()
		opts = append([]compiler.Option{compiler.WithDefaultNamespace(meshgen.Namespace)}, opts...)
		p, _ := compiler.Parse(objs, opts...)
		snap, err := p.Compile(scaleClass, nil)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	cache := compiler.NewCache()
	var versions []string
	for _, rev := range revisions {
		t.Run(rev.name, func(t *testing.T) {
			warm := compile(t, rev.objs, compiler.WithCache(cache))
			cold := compile(t, rev.objs)
			if warm.Version != cold.Version {
				t.Errorf("version = %s; want %s", warm.Version, cold.Version)
			}
			versions = append(versions, cold.Version)
			for typ, want := range cold.Resources.Resources {
				got := warm.Resources.Resources[typ]
				if got.Version != want.Version || len(got.Items) != len(want.Items) {
					t.Fatalf("type %d: version %s with %d items; want %s with %d", typ, got.Version, len(got.Items), want.Version, len(want.Items))
				}
				for name, r := range want.Items {
					g, ok := got.Items[name]
					if !ok {
						t.Fatalf("resource %s is missing", name)
					}
					wb, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Resource)
					if err != nil {
						t.Fatal(err)
					}
					gb, err := proto.MarshalOptions{Deterministic: true}.Marshal(g.Resource)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(gb, wb) {
						t.Errorf("resource %s differs from a cold compile's", name)
					}
				}
			}
		})
	}
	// Each revision changed the output, and "base again" compiled as base.
	if len(versions) == len(revisions) {
		if versions[0] != versions[len(versions)-1] {
			t.Errorf("base compiled to %s, then to %s", versions[0], versions[len(versions)-1])
		}
		for i := 1; i < len(versions)-1; i++ {
			if versions[i] == versions[i-1] {
				t.Errorf("%s: version unchanged (%s)", revisions[i].name, versions[i])
			}
		}
	}
}

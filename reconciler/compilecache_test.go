package reconciler

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
	"github.com/gitmesh/gitmesh/sources"
)

// TestParseCachedEqualsCold parses a sequence of revisions, each changing
// one VirtualService of the last, through the Reconciler (whose parses
// share its compiler.Cache) and checks that every compile equals a cold
// Parse and Compile of the same revision: same diagnostics, same version
// for every resource type.
func TestParseCachedEqualsCold(t *testing.T) {
	r, err := New(Config{Source: dirSource{t.TempDir()}, Fleet: &recordingFleet{never: make(chan struct{})}})
	if err != nil {
		t.Fatal(err)
	}
	base, err := meshgen.Objects(t.TempDir(), 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	revisions := [][]sources.Object{base}
	for gen := 1; gen <= 3; gen++ {
		next, err := meshgen.Replace(t.TempDir(), base, gen*5, gen)
		if err != nil {
			t.Fatal(err)
		}
		revisions = append(revisions, next)
	}
	revisions = append(revisions, base)
	class := nodemeta.SidecarClass(meshgen.Namespace, "")
	prev := "" // the version of revision i-1 through r
	for i, objs := range revisions {
		cached, cachedDiags, _ := r.parse(objs)
		cold, coldDiags := compiler.Parse(objs, compiler.WithDefaultNamespace(r.cfg.DefaultNamespace))
		if got, want := cachedDiags.String(), coldDiags.String(); got != want {
			t.Fatalf("revision %d: diagnostics %q, want %q", i, got, want)
		}
		got, err := cached.Compile(class, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := cold.Compile(class, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != want.Version {
			t.Errorf("revision %d: version %s, want %s", i, got.Version, want.Version)
		}
		for _, typ := range []types.ResponseType{types.Listener, types.Route, types.Cluster, types.Endpoint} {
			if g, w := got.Resources.Resources[typ].Version, want.Resources.Resources[typ].Version; g != w {
				t.Errorf("revision %d, type %d: version %s, want %s", i, typ, g, w)
			}
		}
		if i > 0 && i < len(revisions)-1 && got.Version == prev {
			t.Errorf("revision %d: version unchanged by a changed VirtualService", i)
		}
		prev = got.Version
	}
}

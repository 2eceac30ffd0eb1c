package compiler_test

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
)

// TestParallelDeterministic compiles a mesh large enough for Parse and
// Compile to work on all cores, with some broken objects among it, on
// one core and on several, with and without a Cache: the diagnostics,
// the versions and every resource must be the same. Run it with -race.
func TestParallelDeterministic(t *testing.T) {
	objs, err := meshgen.Objects(t.TempDir(), 150, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 5; i < len(objs); i += 40 { // an unknown field, a bad value, bad YAML
		o := &objs[i]
		switch (i / 40) % 3 {
		case 0:
			o.YAML = append(append([]byte(nil), o.YAML...), "\nspec2: {}\n"...)
		case 1:
			o.YAML = append(append([]byte(nil), o.YAML...), "\nstatus: [\n"...)
		case 2:
			o.YAML = []byte(fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: %s, namespace: %s}\nspec: {hosts: 5}\n", o.APIVersion, o.Kind, o.Name, o.Namespace))
		}
	}
	type result struct {
		diags   []string
		version string
		snap    *compiler.Snapshot
	}
	run := func(procs int, cache *compiler.Cache) result {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		opts := []compiler.Option{compiler.WithDefaultNamespace(meshgen.Namespace)}
		if cache != nil {
			opts = append(opts, compiler.WithCache(cache))
		}
		p, diags := compiler.Parse(objs, opts...)
		var ds []string
		for _, d := range diags {
			ds = append(ds, d.String())
		}
		snap, err := p.Compile(scaleClass, nil)
		if err != nil {
			t.Fatal(err)
		}
		return result{ds, snap.Version, snap}
	}
	want := run(1, nil)
	if len(want.diags) < 3 {
		t.Fatalf("diagnostics = %q; want the broken objects reported", want.diags)
	}
	cache := compiler.NewCache()
	for _, tc := range []struct {
		name  string
		procs int
		cache *compiler.Cache
	}{
		{"4 cores", 4, nil},
		{"4 cores, cache filled", 4, cache},
		{"4 cores, cache used", 4, cache},
		{"1 core, cache used", 1, cache},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(tc.procs, tc.cache)
			if !reflect.DeepEqual(got.diags, want.diags) {
				t.Fatalf("diagnostics differ:\ngot  %q\nwant %q", got.diags, want.diags)
			}
			if got.version != want.version {
				t.Fatalf("version = %s; want %s", got.version, want.version)
			}
			for typ, rs := range want.snap.Resources.Resources {
				g := got.snap.Resources.Resources[typ]
				if g.Version != rs.Version || len(g.Items) != len(rs.Items) {
					t.Fatalf("type %d: version %s with %d items; want %s with %d", typ, g.Version, len(g.Items), rs.Version, len(rs.Items))
				}
				for name, r := range rs.Items {
					if !proto.Equal(g.Items[name].Resource, r.Resource) {
						t.Fatalf("resource %s differs", name)
					}
				}
			}
		})
	}
}

package compiler

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// TestCacheGolden parses and compiles every golden case three times with
// one shared Cache (cold, then from the cache, then after every other case
// filled it) and checks that each run equals the golden files, which the
// uncached compile produces: a Cache changes no byte and no diagnostic.
func TestCacheGolden(t *testing.T) {
	c := NewCache()
	for round := range 3 {
		forEachCase(t, "testdata/*.yaml", func(t *testing.T, f string, tc testCase) {
			p, diags := Parse(splitObjects("testdata/"+tc.name, tc.data), WithCache(c))
			if diags.HasErrors() {
				t.Fatalf("round %d: unexpected errors:\n%s", round, diags)
			}
			snap, err := p.Compile(tc.class, tc.fleet)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			checkGolden(t, strings.TrimSuffix(f, ".yaml")+".golden.json", goldenJSON(t, snap, diags))
		})
		forEachCase(t, "testdata/invalid/*.yaml", func(t *testing.T, f string, tc testCase) {
			_, diags := Parse(splitObjects("invalid/"+tc.name, tc.data), WithCache(c))
			checkGolden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(diags.String()))
		})
	}
}

// TestCacheRevisions compiles a sequence of revisions, each changing one
// object of the last (a VirtualService's route, a DestinationRule's subset,
// an object moved to another line, a duplicate, a YAML error), with one
// Cache, and checks each against a cold Parse and Compile of the same
// revision.
func TestCacheRevisions(t *testing.T) {
	tc := loadCase(t, "testdata/bookinfo.yaml")
	base := string(tc.data)
	revisions := []struct {
		name, data string
		wantErrors bool
	}{
		{"base", base, false},
		{"route changed", strings.Replace(base, "jason", "alice", 1), false},
		{"subset changed", strings.Replace(base, "version: v3", "version: v4", 1), false},
		{"objects moved", "# moved\n\n" + base, false},
		{"duplicate", base + "\n---\n" + firstDocument(t, base, "kind: DestinationRule"), true},
		{"invalid YAML", base + "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x\n", true},
		{"base again", base, false},
	}
	c := NewCache()
	for _, rev := range revisions {
		t.Run(rev.name, func(t *testing.T) {
			objs := splitObjects("testdata/bookinfo.yaml", []byte(rev.data))
			coldP, coldDiags := Parse(objs)
			cold, coldErr := coldP.Compile(tc.class, tc.fleet)
			warmP, warmDiags := Parse(objs, WithCache(c))
			warm, warmErr := warmP.Compile(tc.class, tc.fleet)
			if coldDiags.HasErrors() != rev.wantErrors {
				t.Fatalf("errors: %v, want %v:\n%s", coldDiags.HasErrors(), rev.wantErrors, coldDiags)
			}
			if (coldErr == nil) != (warmErr == nil) {
				t.Fatalf("compile errors differ: cold %v, cached %v", coldErr, warmErr)
			}
			if coldErr != nil {
				return
			}
			if got, want := goldenJSON(t, warm, warmDiags), goldenJSON(t, cold, coldDiags); !bytes.Equal(got, want) {
				t.Errorf("cached compile differs from cold:\n%s", firstDiff(string(want), string(got)))
			}
		})
	}
}

// TestCacheMTLSAndFleet compiles mtls.yaml with one Cache while
// PeerAuthentications and the fleet change, which every service's clusters
// read, and checks each compile against a cold one.
func TestCacheMTLSAndFleet(t *testing.T) {
	tc := loadCase(t, "testdata/mtls.yaml")
	base := string(tc.data)
	fewer := tc.fleet[:len(tc.fleet)-1]
	relabeled := append([]nodemeta.Workload(nil), tc.fleet...)
	relabeled[0].Labels = map[string]string{"app": "reviews", "version": "v2"}
	steps := []struct {
		name  string
		data  string
		fleet []nodemeta.Workload
	}{
		{"base", base, tc.fleet},
		{"mesh mode disabled", strings.Replace(base, "mode: STRICT", "mode: DISABLE", 1), tc.fleet},
		{"namespace mode changed", strings.Replace(base, "mode: PERMISSIVE", "mode: STRICT", 1), tc.fleet},
		{"base again", base, tc.fleet},
		{"a sidecar left", base, fewer},
		{"a sidecar relabeled", base, relabeled},
		{"no fleet", base, nil},
		{"base at last", base, tc.fleet},
	}
	c := NewCache()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			objs := splitObjects("testdata/mtls.yaml", []byte(st.data))
			coldP, coldDiags := Parse(objs)
			cold, err := coldP.Compile(tc.class, st.fleet)
			if err != nil {
				t.Fatal(err)
			}
			warmP, warmDiags := Parse(objs, WithCache(c))
			warm, err := warmP.Compile(tc.class, st.fleet)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := goldenJSON(t, warm, warmDiags), goldenJSON(t, cold, coldDiags); !bytes.Equal(got, want) {
				t.Errorf("cached compile differs from cold:\n%s", firstDiff(string(want), string(got)))
			}
		})
	}
}

// TestCacheConcurrent parses and compiles with one Cache from several
// goroutines (the reconciler parses off its loop); run with -race.
func TestCacheConcurrent(t *testing.T) {
	tc := loadCase(t, "testdata/bookinfo.yaml")
	c := NewCache()
	want := compileWith(t, tc, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if got := compileWith(t, tc, c); !bytes.Equal(got, want) {
					t.Error("cached compile differs from cold")
					return
				}
			}
		})
	}
	wg.Wait()
}

func compileWith(t *testing.T, tc testCase, c *Cache) []byte {
	p, diags := Parse(splitObjects("testdata/"+tc.name, tc.data), WithCache(c))
	snap, err := p.Compile(tc.class, tc.fleet)
	if err != nil {
		t.Error(err)
		return nil
	}
	return goldenJSON(t, snap, diags)
}

// firstDocument returns the first YAML document of data containing marker.
func firstDocument(t *testing.T, data, marker string) string {
	t.Helper()
	for _, doc := range strings.Split(data, "\n---\n") {
		if strings.Contains(doc, marker) {
			return doc
		}
	}
	t.Fatalf("no document with %q", marker)
	return ""
}

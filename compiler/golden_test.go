package compiler

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testCase is a testdata/*.yaml file: policy objects, and in header
// comments the ProxyClass ("# class: {json}") and fleet ("# fleet: [json]").
type testCase struct {
	name  string
	data  []byte
	class nodemeta.ProxyClass
	fleet []nodemeta.Workload
}

func loadCase(t testing.TB, path string) testCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tc := testCase{name: filepath.Base(path), data: data}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "# class: "); ok {
			if err := json.Unmarshal([]byte(v), &tc.class); err != nil {
				t.Fatalf("%s: class: %v", path, err)
			}
		}
		if v, ok := strings.CutPrefix(l, "# fleet: "); ok {
			if err := json.Unmarshal([]byte(v), &tc.fleet); err != nil {
				t.Fatalf("%s: fleet: %v", path, err)
			}
		}
	}
	return tc
}

// goldenJSON renders a Snapshot (and the diagnostics) as stable, indented
// JSON: resources sorted by name, protojson re-indented (protojson's own
// whitespace is deliberately unstable).
func goldenJSON(t testing.TB, snap *Snapshot, diags Diagnostics) []byte {
	t.Helper()
	type group struct {
		Version   string            `json:"version"`
		Resources []json.RawMessage `json:"resources"`
	}
	out := struct {
		Version     string   `json:"version"`
		Diagnostics []string `json:"diagnostics"`
		Listeners   group    `json:"listeners"`
		Routes      group    `json:"routes"`
		Clusters    group    `json:"clusters"`
		Endpoints   group    `json:"endpoints"`
	}{Version: snap.Version, Diagnostics: []string{}}
	for _, d := range diags {
		out.Diagnostics = append(out.Diagnostics, d.String())
	}
	for typ, g := range map[types.ResponseType]*group{
		types.Listener: &out.Listeners, types.Route: &out.Routes,
		types.Cluster: &out.Clusters, types.Endpoint: &out.Endpoints,
	} {
		res := snap.Resources.Resources[typ]
		g.Version = res.Version
		g.Resources = []json.RawMessage{}
		for _, name := range sortedKeys(res.Items) {
			b, err := protojson.Marshal(res.Items[name].Resource)
			if err != nil {
				t.Fatal(err)
			}
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatal(err)
			}
			g.Resources = append(g.Resources, c.Bytes())
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./compiler -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the compiled output (run go test ./compiler -update and review the diff):\n%s", path, firstDiff(string(want), string(got)))
	}
}

// firstDiff shows the first differing line.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + itoa(i+1) + ":\n want: " + w + "\n  got: " + g
		}
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// forEachCase runs check as a subtest for each test case the glob matches.
func forEachCase(t *testing.T, glob string, check func(t *testing.T, path string, tc testCase)) {
	t.Helper()
	files, _ := filepath.Glob(glob)
	if len(files) == 0 {
		t.Fatalf("no %s", glob)
	}
	for _, f := range files {
		tc := loadCase(t, f)
		t.Run(tc.name, func(t *testing.T) { check(t, f, tc) })
	}
}

// checkCompiledGolden compiles tc, which must parse without errors, for its
// class and fleet and compares the snapshot with path's .golden.json.
func checkCompiledGolden(t *testing.T, path string, tc testCase) {
	t.Helper()
	p, diags := Parse(splitObjects("testdata/"+tc.name, tc.data))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(tc.class, tc.fleet)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Resources.Consistent(); err != nil {
		t.Errorf("snapshot is not consistent: %v", err)
	}
	checkGolden(t, strings.TrimSuffix(path, ".yaml")+".golden.json", goldenJSON(t, snap, diags))
}

// TestGolden compiles each testdata/*.yaml for the class in its header and
// compares with testdata/*.golden.json.
func TestGolden(t *testing.T) {
	forEachCase(t, "testdata/*.yaml", checkCompiledGolden)
}

// TestGoldenInvalid parses each testdata/invalid/*.yaml and compares the
// diagnostics with testdata/invalid/*.golden. A policy with errors must
// still compile best-effort without failing.
func TestGoldenInvalid(t *testing.T) {
	forEachCase(t, "testdata/invalid/*.yaml", func(t *testing.T, f string, tc testCase) {
		p, diags := Parse(splitObjects("invalid/"+tc.name, tc.data))
		if !diags.HasErrors() {
			t.Errorf("want errors, got none")
		}
		for _, d := range diags {
			if d.Origin.Line == 0 {
				t.Errorf("diagnostic without a line: %s", d)
			}
		}
		class := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Outbound: "127.0.0.1:15001", Inbound: "127.0.0.1:15006", App: "127.0.0.1:8080"}
		if _, err := p.Compile(class, nil); err != nil {
			t.Errorf("best-effort compile: %v", err)
		}
		checkGolden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(diags.String()))
	})
}

package sources

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

// render writes objects in the golden format: a header line per object,
// then its YAML.
func render(objs []Object) []byte {
	var b bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&b, "=== %s %s %s %s/%s lines=%d\n", o.Origin, o.APIVersion, o.Kind, o.Namespace, o.Name, len(o.Lines))
		b.Write(o.YAML)
		if !bytes.HasSuffix(o.YAML, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

func TestBuildGolden(t *testing.T) {
	tests := []struct {
		name, root, path, golden string
	}{
		{"plain dir", "testdata/plain", "", "plain.golden"},
		{"plain subdir", "testdata/plain", "policy", "plain-policy.golden"},
		{"kustomize overlay", "testdata/kustomize", "overlays/prod", "kustomize-overlay.golden"},
		{"kustomize base", "testdata/kustomize", "base", "kustomize-base.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := Build(tt.root, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, render(objs))
			for _, o := range objs {
				if bytes.Contains(o.YAML, []byte("config.kubernetes.io/origin")) {
					t.Errorf("%s: origin annotation left in YAML:\n%s", o.Origin, o.YAML)
				}
			}
		})
	}
}

func TestBuildOrigins(t *testing.T) {
	type want struct {
		origin, ns string
	}
	tests := []struct {
		name, root, path string
		want             map[string]want // kind/name -> origin
	}{
		{"plain", "testdata/plain", ".", map[string]want{
			"ServiceEntry/ratings":     {"a.yaml:1", ""},
			"VirtualService/reviews":   {"policy/reviews.yaml:3", "bookinfo"},
			"DestinationRule/reviews":  {"policy/reviews.yaml:31", ""},
			"Gateway/bookinfo-gateway": {"policy/sub/gateway.yml:2", ""},
		}},
		{"overlay points at base files", "testdata/kustomize", "overlays/prod", map[string]want{
			"VirtualService/reviews":  {"base/reviews.yaml:2", "prod"},
			"DestinationRule/reviews": {"base/reviews.yaml:15", "prod"},
			"VirtualService/ratings":  {"base/ratings.yaml:1", "prod"},
			"Gateway/prod-gateway":    {"overlays/prod/gateway.yaml:1", "prod"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := Build(tt.root, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]want{}
			for _, o := range objs {
				got[o.Kind+"/"+o.Name] = want{o.Origin.String(), o.Namespace}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d objects %v; want %d", len(got), got, len(tt.want))
			}
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("%s: got %+v; want %+v", k, got[k], w)
				}
			}
		})
	}
}

func TestObjectLines(t *testing.T) {
	plain, _, err := Build("testdata/plain", "policy")
	if err != nil {
		t.Fatal(err)
	}
	overlay, _, err := Build("testdata/kustomize", "overlays/prod")
	if err != nil {
		t.Fatal(err)
	}
	find := func(objs []Object, kind, name string) *Object {
		for i := range objs {
			if objs[i].Kind == kind && objs[i].Name == name {
				return &objs[i]
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}
	vs := find(plain, "VirtualService", "reviews")
	dr := find(plain, "DestinationRule", "reviews")
	kvs := find(overlay, "VirtualService", "reviews")
	tests := []struct {
		obj  *Object
		path string
		want string
	}{
		{vs, "metadata.name", "policy/reviews.yaml:6"},
		{vs, "spec.hosts[0]", "policy/reviews.yaml:10"},
		{vs, "spec.http[0]", "policy/reviews.yaml:12"},
		{vs, "spec.http[0].match[0].headers.end-user.exact", "policy/reviews.yaml:15"},
		{vs, "spec.http[0].route[0].destination.subset", "policy/reviews.yaml:19"},
		{vs, "spec.http[1].route[1].weight", "policy/reviews.yaml:28"},
		{vs, "spec.http[1].route[1].destination.port.number", "policy/reviews.yaml:25"}, // falls back to destination
		{vs, "status", "policy/reviews.yaml:3"},                                         // falls back to the document
		{dr, "spec.subsets[1].name", "policy/reviews.yaml:41"},
		{kvs, "spec.http[0].route[0].destination.subset", "base/reviews.yaml:13"},
		{kvs, "metadata.name", "base/reviews.yaml:5"},
	}
	for _, tt := range tests {
		t.Run(tt.obj.Kind+"/"+tt.path, func(t *testing.T) {
			if got := tt.obj.At(tt.path).String(); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name, root, path string
		want             string // the whole message
		wantFile         string
		wantLine         int
		wantIs           error
	}{
		{name: "bad yaml under kustomize", root: "testdata/errors/kustbadyaml",
			want: "vs.yaml:5: yaml: did not find expected key", wantFile: "vs.yaml", wantLine: 5},
		{name: "kustomize failure", root: "testdata/errors/badkustomize",
			want: "kustomization.yaml: kustomize build: ", wantFile: "kustomization.yaml"},
		{name: "remote base in nested kustomization", root: "testdata/remote", path: "overlay",
			want:     `local/kustomization.yaml:3: remote kustomize bases and resources are not allowed: resources "github.com/example/policy//base?ref=v1.0.0"`,
			wantFile: "local/kustomization.yaml", wantLine: 3, wantIs: ErrRemoteBase},
		{name: "remote http resource", root: "testdata/remote", path: "http",
			want:     `http/kustomization.yaml:2: remote kustomize bases and resources are not allowed: resources "https://example.com/policy/vs.yaml"`,
			wantFile: "http/kustomization.yaml", wantLine: 2, wantIs: ErrRemoteBase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Build(tt.root, tt.path)
			if err == nil {
				t.Fatal("got no error")
			}
			if got := err.Error(); got != tt.want && !(strings.HasSuffix(tt.want, ": ") && strings.HasPrefix(got, tt.want)) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			var be *BuildError
			if !errors.As(err, &be) {
				t.Fatalf("got %T; want *BuildError", err)
			}
			if be.File != tt.wantFile || be.Line != tt.wantLine {
				t.Errorf("got %s:%d; want %s:%d", be.File, be.Line, tt.wantFile, tt.wantLine)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %q; want errors.Is %q", err, tt.wantIs)
			}
		})
	}
}

func TestBuildRejectsPaths(t *testing.T) {
	for _, p := range []string{"../plain", "/etc", "policy/../../x", "missing", "a.yaml"} {
		t.Run(p, func(t *testing.T) {
			if _, _, err := Build("testdata/plain", p); err == nil {
				t.Errorf("got no error for %q", p)
			}
		})
	}
	if _, _, err := Build("testdata/plain", "", WithMaxBytes(10)); err == nil || !strings.Contains(err.Error(), "more than 10 bytes") {
		t.Errorf("got %v; want a size error", err)
	}
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lines []int // line() of each document
	}{
		{"single", "a: 1\n", []int{1}},
		{"leading comments", "# c\n\n# d\na: 1\n", []int{4}},
		{"markers", "---\na: 1\n---\n\nb: 2\n", []int{0, 2, 5}},
		{"marker with comment", "--- # x\na: 1\n", []int{0, 2}},
		{"content on marker line", "a: 1\n--- {b: 2}\n", []int{1, 2}},
		{"document end", "a: 1\n...\nb: 2\n", []int{1, 3}},
		{"crlf", "a: 1\r\n---\r\nb: 2\r\n", []int{1, 3}},
		{"not a marker", "a: ---x\n", []int{1}},
		{"no trailing newline", "a: 1\n---\nb: 2", []int{1, 3}},
		{"empty", "", []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := splitDocuments("f.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for i := range docs {
				got = append(got, docs[i].line())
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.lines) {
				t.Errorf("got %v; want %v", got, tt.lines)
			}
		})
	}
}

// FuzzSplitDocuments checks that splitting never panics and that every line
// it reports lies within the input.
func FuzzSplitDocuments(f *testing.F) {
	for _, p := range []string{"testdata/plain/policy/reviews.yaml", "testdata/plain/policy/sub/gateway.yml", "testdata/errors/badyaml/policy/bad.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("--- {a: [1, 2]}\n...\n---\nb: &x {c: 1}\nd: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// YAML breaks lines at \n, \r\n and a lone \r.
		n := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 1
		docs, err := splitDocuments("f.yaml", data)
		if err != nil {
			var be *BuildError
			if !errors.As(err, &be) || be.Line < 1 || be.Line > n+1 {
				t.Fatalf("bad error %#v for %q", err, data)
			}
			return
		}
		for i := range docs {
			for p, l := range fieldLines(docs[i].root, docs[i].offset) {
				if l < 1 || l > n {
					t.Fatalf("field %s at line %d of a %d-line input %q", p, l, n, data)
				}
			}
			if docs[i].root == nil {
				continue
			}
			// Reading the document (lists expanded, duplicate keys found)
			// never panics and names lines inside the input.
			_, problems := readNode("f.yaml", docs[i].root, docs[i].offset, docs[i].raw)
			for _, p := range problems {
				if p.Origin.Line < 1 || p.Origin.Line > n {
					t.Fatalf("problem %q at line %d of a %d-line input %q", p.Message, p.Origin.Line, n, data)
				}
			}
		}
	})
}

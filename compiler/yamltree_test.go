package compiler

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
)

// yamlTreeCases are documents whose scalars YAML 1.1 and JSON spell
// differently, for the comparison of both decodings.
var yamlTreeCases = []string{
	"a: 1\nb: 1.5\nc: 1e3\nd: 0x1F\ne: 017\nf: -0\ng: .5\nh: 1_000\n",
	"a: yes\nb: off\nc: ~\nd: null\ne: 2026-01-02\nf: 2026-01-02T03:04:05Z\ng: '12'\n",
	"1: a\n2.5: b\ntrue: c\nnull: d\n",
	"a: .inf\n",
	"a: .nan\n",
	"a: [1, 2, {b: c}]\nd: {e: [f, g]}\n",
	"a: 1e400\n",
	"a: 1.0e-7\nb: 123456789012345678901234567890\nc: 18446744073709551615\nd: -9223372036854775808\n",
	"a: !!binary gIGC\n",
	"a: &x {b: 1}\nc: *x\nd:\n  <<: *x\n  e: 2\n",
	"a: 1\na: 2\n",
	"a: [\n",
	"- 1\n- 2\n",
	"",
	"just a string",
	"a: 1\n1: 2\n",
	"a: <b> & \"c\"\n",
	"a:\n- b\n- c: d\n  e: [f, {g: 'h''i'}]\n  k: \"l: m\" # n\n-\n- - o\n",
	"a: b\n  c\n",
	"a: {b: c}, d\n",
	"a:\n  b: 1\n c: 2\n",
	"x-y: 0x1F\nz: 1_0\nw: 2026-01-02\nv: 3s\nu: 10.1.2.3\nt: -1\ns: /api\n",
	"key with space: a:b\n'q': \"r\"\n",
}

// TestYAMLTreeMatchesJSON checks that decodeDocument's direct conversion
// gives the tree and the error the way through JSON text gives, on
// every YAML document of the repository's test data and on documents
// written to differ.
func TestYAMLTreeMatchesJSON(t *testing.T) {
	docs := append([]string(nil), yamlTreeCases...)
	for _, dir := range []string{"testdata", "../sources/testdata", "../examples"} {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, strings.Split(string(data), "\n---")...)
			return nil
		})
	}
	docs = append(docs, strings.Split(string(meshgen.Service(7, 1)), "---\n")...)
	fast := 0
	for _, doc := range docs {
		if _, ok := fastYAML([]byte(doc)); ok {
			fast++
		}
	}
	t.Logf("%d of %d documents take fastYAML", fast, len(docs))
	if len(docs) < 50 {
		t.Fatalf("only %d documents found", len(docs))
	}
	if fast < len(docs)/2 {
		t.Fatalf("only %d of %d documents take fastYAML", fast, len(docs))
	}
	for _, doc := range docs {
		compareYAMLTree(t, []byte(doc))
	}
}

func compareYAMLTree(t *testing.T, doc []byte) {
	t.Helper()
	want, wantErr := decodeDocumentJSON(doc)
	if fast, ok := fastYAML(doc); ok {
		if wantErr != nil {
			t.Fatalf("document %q: fastYAML read what the parser refuses (%v)", doc, wantErr)
		}
		if !reflect.DeepEqual(any(fast), want) {
			t.Fatalf("document %q: fastYAML\ngot  %#v\nwant %#v", doc, fast, want)
		}
	}
	got, err := yamlTree(doc)
	if errors.Is(err, errNotJSONTree) {
		return // decodeDocument takes the JSON way for it
	}
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("document %q: error %v; want %v", doc, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("document %q:\ngot  %#v\nwant %#v", doc, got, want)
	}
}

// FuzzYAMLTree compares decodeDocument's ways on any document.
func FuzzYAMLTree(f *testing.F) {
	for _, c := range yamlTreeCases {
		f.Add(c)
	}
	for _, doc := range strings.Split(string(meshgen.Service(7, 1)), "---\n") {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		compareYAMLTree(t, []byte(doc))
	})
}

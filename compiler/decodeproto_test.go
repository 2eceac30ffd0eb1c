package compiler

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/sources"
)

// TestFillMessageMatchesProtoJSON checks that decodeFast builds the
// message protojson builds from the same tree, for every spec of the
// repository's test data and examples, and never accepts a tree protojson
// refuses.
func TestFillMessageMatchesProtoJSON(t *testing.T) {
	n, fast := 0, 0
	for _, dir := range []string{"testdata", "../examples", "../sources/testdata"} {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range strings.Split(string(data), "\n---") {
				var head struct{ Kind string }
				if yaml.Unmarshal([]byte(doc), &head) != nil || !isSpecKind(head.Kind) {
					continue
				}
				tree, err := decodeDocument([]byte(doc))
				if err != nil {
					continue
				}
				spec, _ := tree["spec"].(map[string]any)
				if spec == nil {
					continue
				}
				n++
				if compareFill(t, path, head.Kind, spec) {
					fast++
				}
			}
			return nil
		})
	}
	if n < 30 {
		t.Fatalf("only %d specs found", n)
	}
	if fast < n/2 {
		t.Fatalf("only %d of %d specs decoded the fast way", fast, n)
	}
}

// compareFill reports whether decodeFast decoded spec itself.
func compareFill(t *testing.T, path, kind string, spec map[string]any) bool {
	t.Helper()
	// walker rewrites durations and drops unsupported fields first, as
	// decodeSpec does before either decoding.
	var diags Diagnostics
	r := &reporter{obj: &sources.Object{}, kind: kind, diag: &diags}
	newSpec := func() proto.Message { return decodeKind(r, kind, map[string]any{}) }
	w := walker{r: r}
	w.message(newSpec().ProtoReflect().Descriptor(), spec, "spec")
	if w.schemaErrors > 0 {
		return false
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	slow := newSpec()
	slowErr := protojson.Unmarshal(b, slow)
	fast := newSpec()
	if !decodeFast(spec, fast) {
		return false // protojson decodes it
	}
	if slowErr != nil {
		t.Fatalf("%s: %s: fast decoding accepted what protojson refuses (%v)", path, kind, slowErr)
	}
	if !proto.Equal(fast, slow) {
		t.Fatalf("%s: %s: fast decoding\n%v\nprotojson\n%v", path, kind, fast, slow)
	}
	return true
}

package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path -> content) under a new temporary directory
// and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: good
spec:
  hosts: [good]
  http:
  - route:
    - destination: {host: good}
`

func TestBuildProblems(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// objects are the objects read, as "file:line Kind/name".
		objects []string
		// problems are "file:line Reason: message".
		problems []string
	}{
		{
			name: "bad yaml in one document keeps the others",
			files: map[string]string{
				"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n---\n" + goodVS,
				"b.yaml": goodVS,
			},
			objects:  []string{"a.yaml:1 ConfigMap/a", "a.yaml:7 VirtualService/good", "b.yaml:1 VirtualService/good"},
			problems: []string{"a.yaml:6 InvalidYAML: yaml: did not find expected node content"},
		},
		{
			name:    "null and comment-only documents are skipped",
			files:   map[string]string{"a.yaml": "---\n---\n# only a comment\n---\nnull\n---\n~\n---\n" + goodVS},
			objects: []string{"a.yaml:9 VirtualService/good"},
		},
		{
			name:     "missing metadata.name",
			files:    map[string]string{"a.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n---\n" + goodVS},
			objects:  []string{"a.yaml:6 VirtualService/good"},
			problems: []string{"a.yaml:1 MissingField: missing metadata.name"},
		},
		{
			name:     "missing kind",
			files:    map[string]string{"a.yaml": "apiVersion: v1\nmetadata: {name: x}\n"},
			problems: []string{"a.yaml:1 MissingField: missing kind"},
		},
		{
			name:     "not a mapping",
			files:    map[string]string{"a.yaml": "- a\n- b\n"},
			problems: []string{"a.yaml:1 NotAnObject: document is not a mapping (it is a list)"},
		},
		{
			name: "List items are expanded with their own lines",
			files: map[string]string{"list.yaml": `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: reviews}
- null
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: reviews
  spec:
    hosts: [reviews]
- kind: Service
  metadata: {name: nover}
`},
			objects:  []string{"list.yaml:4 Service/reviews", "list.yaml:8 VirtualService/reviews"},
			problems: []string{"list.yaml:14 MissingField: missing apiVersion"},
		},
		{
			name: "typed list",
			files: map[string]string{"svc.yaml": `apiVersion: v1
kind: ServiceList
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
`},
			objects: []string{"svc.yaml:4 Service/a", "svc.yaml:7 Service/b"},
		},
		{
			name: "duplicate keys are reported at the second key, the object kept",
			files: map[string]string{"vs.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: dup
spec:
  hosts: [a]
  http:
  - route:
    - destination: {host: a}
  hosts: [b]
`},
			objects:  []string{"vs.yaml:1 VirtualService/dup"},
			problems: []string{`vs.yaml:10 DuplicateKey: duplicate key "hosts" (first at line 6); YAML keys must be unique and decoders keep only the last one`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			objs, problems, err := Build(dir, ".")
			if err != nil {
				t.Fatal(err)
			}
			var gotObjs, gotProblems []string
			for _, o := range objs {
				gotObjs = append(gotObjs, o.Origin.String()+" "+o.Kind+"/"+o.Name)
			}
			for _, p := range problems {
				gotProblems = append(gotProblems, p.Origin.String()+" "+string(p.Reason)+": "+p.Message)
			}
			if strings.Join(gotObjs, "\n") != strings.Join(tt.objects, "\n") {
				t.Errorf("objects:\ngot  %q\nwant %q", gotObjs, tt.objects)
			}
			if strings.Join(gotProblems, "\n") != strings.Join(tt.problems, "\n") {
				t.Errorf("problems:\ngot  %q\nwant %q", gotProblems, tt.problems)
			}
		})
	}
}

// TestBuildProblemsInTestdata checks the committed broken trees: each
// document-level defect is a Problem with file and line, not an error
// (the first one is checked).
func TestBuildProblemsInTestdata(t *testing.T) {
	tests := []struct {
		root, want string
		objects    int
	}{
		{"testdata/errors/badyaml", "policy/bad.yaml:7: yaml: did not find expected ',' or ']'", 1},
		{"testdata/errors/nokind", "vs.yaml:7: missing kind", 0},
		{"testdata/errors/noname", "vs.yaml:5: missing metadata.name", 0},
		{"testdata/errors/notmapping", "list.yaml:1: document is not a mapping (it is a list)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			objs, problems, err := Build(tt.root, ".")
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) == 0 || problems[0].String() != tt.want {
				t.Errorf("got %v; want [%s]", problems, tt.want)
			}
			if len(objs) < tt.objects {
				t.Errorf("got %d objects; want at least %d", len(objs), tt.objects)
			}
		})
	}
}

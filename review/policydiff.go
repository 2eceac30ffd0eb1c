package review

import (
	"cmp"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/sources"
)

// ObjectDiff is one policy object that differs between base and head.
type ObjectDiff struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Change is added, removed or changed.
	Change string `json:"change"`
	// Origin is where the object is written in head (in base when removed).
	Origin sources.Origin `json:"origin"`
	// Fields are the changed fields (empty for added and removed objects).
	Fields []FieldChange `json:"fields,omitempty"`
}

// ID returns "Kind namespace/name".
func (o ObjectDiff) ID() string {
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// keyedObject is an object with its decoded document.
type keyedObject struct {
	obj *sources.Object
	ns  string
	doc any
}

// diffObjects compares objects by kind, namespace (defaulted to ns) and
// name, field by field: a change of comments or formatting is no change.
func diffObjects(base, head []sources.Object, ns string) ([]ObjectDiff, error) {
	bm, err := keyObjects(base, ns)
	if err != nil {
		return nil, fmt.Errorf("reading base objects: %w", err)
	}
	hm, err := keyObjects(head, ns)
	if err != nil {
		return nil, fmt.Errorf("reading head objects: %w", err)
	}
	out := []ObjectDiff{}
	for k, h := range hm {
		b, ok := bm[k]
		od := ObjectDiff{Kind: h.obj.Kind, Namespace: h.ns, Name: h.obj.Name, Origin: h.obj.Origin}
		if !ok {
			od.Change = Added
			out = append(out, od)
			continue
		}
		d := &differ{secretTree: secretTree(h.obj.Kind)}
		d.diff("", b.doc, h.doc)
		if len(d.out) == 0 {
			continue
		}
		for i := range d.out {
			d.out[i].Line = h.obj.Line(d.out[i].Path)
		}
		od.Change, od.Fields = Changed, d.out
		out = append(out, od)
	}
	for k, b := range bm {
		if _, ok := hm[k]; !ok {
			out = append(out, ObjectDiff{Kind: b.obj.Kind, Namespace: b.ns, Name: b.obj.Name, Change: Removed, Origin: b.obj.Origin})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, nil
}

// keyObjects decodes objs keyed by kind/namespace/name. A duplicate keeps
// the first (the compiler reports the second).
func keyObjects(objs []sources.Object, defaultNS string) (map[string]keyedObject, error) {
	m := make(map[string]keyedObject, len(objs))
	for i := range objs {
		o := &objs[i]
		ns := cmp.Or(o.Namespace, defaultNS)
		key := o.Kind + "/" + ns + "/" + o.Name
		if _, dup := m[key]; dup {
			continue
		}
		j, err := yaml.YAMLToJSON(o.YAML)
		if err != nil {
			return nil, fmt.Errorf("decoding %s at %s: %w", key, o.Origin, err)
		}
		doc, err := decodeJSON(j)
		if err != nil {
			return nil, fmt.Errorf("decoding %s at %s: %w", key, o.Origin, err)
		}
		if mm, ok := doc.(map[string]any); ok {
			if md, ok := mm["metadata"].(map[string]any); ok && md["namespace"] == nil {
				// An omitted namespace and the default one are the same.
				md["namespace"] = ns
			}
		}
		m[key] = keyedObject{obj: o, ns: ns, doc: doc}
	}
	return m, nil
}

// secretTree returns, for a kind holding secrets (a Kubernetes Secret),
// which paths must never be shown.
func secretTree(kind string) func(string) bool {
	if kind != "Secret" {
		return nil
	}
	return func(path string) bool {
		return path == "" || path == "data" || path == "stringData" ||
			strings.HasPrefix(path, "data.") || strings.HasPrefix(path, "stringData.")
	}
}

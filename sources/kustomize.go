package sources

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// buildKustomize runs kustomize on the kustomization kfile in rel, over an
// in-memory copy of root.
func buildKustomize(root, rel, kfile string, cfg buildConfig) ([]Object, error) {
	mem := filesys.MakeFsInMemory()
	all := func(string) bool { return true }
	err := walkFiles(root, ".", cfg, all, func(file string, data []byte) error {
		if err := mem.MkdirAll(path.Dir("/" + file)); err != nil {
			return fmt.Errorf("copying %s: %w", file, err)
		}
		if err := mem.WriteFile("/"+file, data); err != nil {
			return fmt.Errorf("copying %s: %w", file, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kpath := path.Join(rel, kfile)
	s := &scanner{fs: mem, seen: map[string]bool{}}
	if err := s.scan(rel, kfile); err != nil {
		return nil, err
	}
	if err := enableOrigins(mem, kpath); err != nil {
		return nil, err
	}

	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(mem, path.Join("/", rel))
	if err != nil {
		return nil, &BuildError{File: kpath, Err: fmt.Errorf("kustomize build: %w", err)}
	}

	docs := map[string][]document{} // parsed source files, by root-relative path
	objs := make([]Object, 0, m.Size())
	for _, r := range m.Resources() {
		o, err := kustomizeObject(mem, rel, kpath, r, docs)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// kustomizeObject turns one built resource into an Object, finding its
// origin from kustomize's origin annotation, which it removes.
func kustomizeObject(mem filesys.FileSystem, rel, kpath string, r *resource.Resource, docs map[string][]document) (Object, error) {
	o := Object{
		APIVersion: r.GetApiVersion(),
		Kind:       r.GetKind(),
		Name:       r.GetName(),
		Namespace:  r.GetNamespace(),
		Origin:     Origin{File: kpath},
	}
	origin, err := r.GetOrigin()
	if err != nil {
		return Object{}, &BuildError{File: kpath, Err: fmt.Errorf("reading origin of %s %s: %w", o.Kind, o.Name, err)}
	}
	if err := r.SetOrigin(nil); err != nil {
		return Object{}, &BuildError{File: kpath, Err: fmt.Errorf("removing origin of %s %s: %w", o.Kind, o.Name, err)}
	}
	if o.YAML, err = r.AsYAML(); err != nil {
		return Object{}, &BuildError{File: kpath, Err: fmt.Errorf("encoding %s %s: %w", o.Kind, o.Name, err)}
	}
	if origin != nil && origin.Repo == "" {
		switch {
		case origin.Path != "":
			o.Origin.File = path.Join(rel, origin.Path)
		case origin.ConfiguredIn != "":
			o.Origin.File = path.Join(rel, origin.ConfiguredIn)
		}
	}
	if origin != nil && origin.Path != "" && origin.Repo == "" {
		ds, ok := docs[o.Origin.File]
		if !ok {
			data, err := mem.ReadFile("/" + o.Origin.File)
			if err == nil {
				ds, err = splitDocuments(o.Origin.File, data)
			}
			if err != nil {
				return Object{}, err
			}
			docs[o.Origin.File] = ds
		}
		if d := matchDocument(ds, o.Kind, o.Name); d != nil {
			o.Origin.Line = d.line()
			o.Lines = fieldLines(d.root, d.offset)
		}
	}
	for _, f := range [...]struct{ name, value string }{
		{"apiVersion", o.APIVersion}, {"kind", o.Kind}, {"metadata.name", o.Name},
	} {
		if f.value == "" {
			return Object{}, &BuildError{File: o.Origin.File, Line: o.Origin.Line, Err: fmt.Errorf("missing %s", f.name)}
		}
	}
	return o, nil
}

// matchDocument finds the document a built resource of kind and name came
// from: the same kind and name, else the same kind and the longest name
// the built one contains (kustomize adds prefixes and suffixes), else the
// only document of that kind.
func matchDocument(docs []document, kind, name string) *document {
	var best *document
	bestLen, sameKind := -1, 0
	var onlyOfKind *document
	for i := range docs {
		d := &docs[i]
		if d.root == nil || lookupString(d.root, "kind") != kind {
			continue
		}
		sameKind++
		onlyOfKind = d
		n := lookupString(d.root, "metadata", "name")
		if n == name {
			return d
		}
		if n != "" && strings.Contains(name, n) && len(n) > bestLen {
			best, bestLen = d, len(n)
		}
	}
	if best != nil {
		return best
	}
	if sameKind == 1 {
		return onlyOfKind
	}
	return nil
}

// lookupString returns the scalar at keys under n, or "".
func lookupString(n *yaml.Node, keys ...string) string {
	if v := lookup(n, keys...); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// enableOrigins rewrites the kustomization at kpath (in mem) so kustomize
// annotates every resource with the file it came from.
func enableOrigins(mem filesys.FileSystem, kpath string) error {
	data, err := mem.ReadFile("/" + kpath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kpath, err)
	}
	docs, err := splitDocuments(kpath, data)
	if err != nil {
		return err
	}
	if len(docs) != 1 || docs[0].root == nil || docs[0].root.Kind != yaml.MappingNode {
		return &BuildError{File: kpath, Line: 1, Err: fmt.Errorf("kustomization is not a single mapping")}
	}
	k := docs[0].root
	const key, opt = "buildMetadata", "originAnnotations"
	switch bm := lookup(k, key); {
	case bm == nil:
		k.Content = append(k.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: key},
			&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: opt}}})
	case bm.Kind == yaml.SequenceNode:
		for _, c := range bm.Content {
			if c.Value == opt {
				return nil
			}
		}
		bm.Content = append(bm.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: opt})
	default:
		return &BuildError{File: kpath, Line: bm.Line + docs[0].offset, Err: fmt.Errorf("%s is not a list", key)}
	}
	out, err := yaml.Marshal(k)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", kpath, err)
	}
	if err := mem.WriteFile("/"+kpath, out); err != nil {
		return fmt.Errorf("writing %s: %w", kpath, err)
	}
	return nil
}

// Fields of a kustomization that name files or directories.
var (
	// listFields hold lists of paths (or inline YAML, which has newlines).
	listFields = []string{"resources", "bases", "components", "crds", "configurations",
		"generators", "transformers", "validators", "patchesStrategicMerge"}
	// pathFields hold lists of mappings with a "path".
	pathFields = []string{"patches", "patchesJson6902", "replacements"}
	// generatorFields hold lists of generators with files, envs and env.
	generatorFields = []string{"configMapGenerator", "secretGenerator"}
)

// scanner walks kustomizations, refusing remote references and checking
// the YAML of local resource files, before kustomize runs.
type scanner struct {
	fs   filesys.FileSystem
	seen map[string]bool // kustomization files already scanned
}

// scan checks the kustomization file kfile in dir (both root-relative) and
// the local kustomizations it refers to.
func (s *scanner) scan(dir, kfile string) error {
	kpath := path.Join(dir, kfile)
	if s.seen[kpath] {
		return nil
	}
	s.seen[kpath] = true
	data, err := s.fs.ReadFile("/" + kpath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kpath, err)
	}
	docs, err := splitDocuments(kpath, data)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.root == nil {
			continue
		}
		for _, r := range kustomizationRefs(d.root) {
			if err := s.check(dir, kpath, r, d.offset); err != nil {
				return err
			}
		}
	}
	return nil
}

// ref is one path a kustomization refers to.
type ref struct {
	value string
	line  int // in the document
	field string
}

// check refuses a remote reference, descends into a local kustomization
// directory and parses a local resource file.
func (s *scanner) check(dir, kpath string, r ref, offset int) error {
	p := path.Join("/", dir, r.value)
	local := !strings.Contains(r.value, "://") && s.fs.Exists(p)
	if !local {
		if looksRemote(r.value) {
			return &BuildError{File: kpath, Line: r.line + offset,
				Err: fmt.Errorf("%w: %s %q", ErrRemoteBase, r.field, r.value)}
		}
		return nil // kustomize reports the missing file itself
	}
	if !within("/", p) || r.field != "resources" && r.field != "bases" && r.field != "components" {
		return nil
	}
	rel := strings.TrimPrefix(p, "/")
	if s.fs.IsDir(p) {
		for _, n := range kustomizationNames {
			if s.fs.Exists(path.Join(p, n)) {
				return s.scan(rel, n)
			}
		}
		return nil
	}
	data, err := s.fs.ReadFile(p)
	if err != nil {
		return nil
	}
	_, err = splitDocuments(rel, data)
	return err
}

// kustomizationRefs lists the paths a kustomization document refers to.
func kustomizationRefs(k *yaml.Node) []ref {
	var refs []ref
	add := func(field string, n *yaml.Node) {
		if n != nil && n.Kind == yaml.ScalarNode && n.Value != "" && !strings.Contains(n.Value, "\n") {
			refs = append(refs, ref{value: n.Value, line: n.Line, field: field})
		}
	}
	// addFile adds a generator's file source, written "path" or "key=path".
	addFile := func(field string, n *yaml.Node) {
		if n != nil && n.Kind == yaml.ScalarNode {
			if k, p, ok := strings.Cut(n.Value, "="); ok && !strings.Contains(k, "/") {
				c := *n
				c.Value = p
				n = &c
			}
		}
		add(field, n)
	}
	items := func(n *yaml.Node) []*yaml.Node {
		if n == nil || n.Kind != yaml.SequenceNode {
			return nil
		}
		return n.Content
	}
	for _, f := range listFields {
		for _, it := range items(lookup(k, f)) {
			add(f, it)
		}
	}
	for _, f := range pathFields {
		for _, it := range items(lookup(k, f)) {
			add(f, lookup(it, "path"))
		}
	}
	for _, f := range generatorFields {
		for _, g := range items(lookup(k, f)) {
			for _, it := range items(lookup(g, "files")) {
				addFile(f, it)
			}
			for _, it := range items(lookup(g, "envs")) {
				add(f, it)
			}
			add(f, lookup(g, "env"))
		}
	}
	add("openapi", lookup(k, "openapi", "path"))
	return refs
}

var hostLike = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]+)?$`)

// looksRemote reports whether a kustomization reference that is not a local
// file names a Git repository or URL, as kustomize would fetch it.
func looksRemote(v string) bool {
	switch {
	case strings.Contains(v, "://"),
		strings.HasPrefix(v, "git@"),
		strings.HasPrefix(v, "ssh:"),
		strings.Contains(v, "?ref="), strings.Contains(v, "?version="),
		strings.Contains(v, ".git/"), strings.HasSuffix(v, ".git"), strings.Contains(v, "_git/"):
		return true
	}
	first, _, more := strings.Cut(v, "/")
	return more && first != "." && first != ".." && hostLike.MatchString(first)
}

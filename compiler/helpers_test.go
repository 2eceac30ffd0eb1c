package compiler

import (
	"bytes"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/gitmesh/gitmesh/sources"
)

// splitObjects splits a multi-document YAML file into Objects the way
// sources does after kustomize build: Origin.Line is the document's first
// content line and Lines maps every field path to its line. It never fails:
// a document that does not parse keeps what a line scan finds, so that the
// compiler reports it.
func splitObjects(file string, data []byte) []sources.Object {
	var objs []sources.Object
	lines := strings.SplitAfter(string(data), "\n")
	start := 0
	flush := func(end int) {
		chunk := lines[start:end]
		first := -1
		for i, l := range chunk {
			t := strings.TrimSpace(l)
			if t != "" && !strings.HasPrefix(t, "#") {
				first = i
				break
			}
		}
		if first >= 0 {
			doc := strings.Join(chunk, "")
			obj := sources.Object{YAML: []byte(doc), Origin: sources.Origin{File: file, Line: start + first + 1}}
			fillObject(&obj, []byte(doc), start)
			objs = append(objs, obj)
		}
	}
	for i, l := range lines {
		if strings.TrimRight(l, " \t\r\n") == "---" {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return objs
}

// fillObject sets apiVersion, kind, name, namespace and Lines of obj from
// doc, whose first line is line offset+1 of the file.
func fillObject(obj *sources.Object, doc []byte, offset int) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil || len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
		scanObject(obj, doc)
		return
	}
	obj.Lines = map[string]int{}
	walkNode(n.Content[0], "", offset, obj.Lines)
	root := n.Content[0]
	obj.APIVersion = scalar(root, "apiVersion")
	obj.Kind = scalar(root, "kind")
	if md := child(root, "metadata"); md != nil {
		obj.Name = scalar(md, "name")
		obj.Namespace = scalar(md, "namespace")
	}
}

func walkNode(n *yaml.Node, path string, offset int, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line + offset
			walkNode(v, p, offset, out)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = v.Line + offset
			walkNode(v, p, offset, out)
		}
	}
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(m *yaml.Node, key string) string {
	if c := child(m, key); c != nil && c.Kind == yaml.ScalarNode {
		return c.Value
	}
	return ""
}

// scanObject finds apiVersion, kind and metadata name/namespace by lines.
func scanObject(obj *sources.Object, doc []byte) {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		s := string(l)
		switch {
		case strings.HasPrefix(s, "apiVersion:"):
			obj.APIVersion = strings.TrimSpace(strings.TrimPrefix(s, "apiVersion:"))
		case strings.HasPrefix(s, "kind:"):
			obj.Kind = strings.TrimSpace(strings.TrimPrefix(s, "kind:"))
		case strings.HasPrefix(s, "  name:") && obj.Name == "":
			obj.Name = strings.TrimSpace(strings.TrimPrefix(s, "  name:"))
		case strings.HasPrefix(s, "  namespace:") && obj.Namespace == "":
			obj.Namespace = strings.TrimSpace(strings.TrimPrefix(s, "  namespace:"))
		}
	}
}

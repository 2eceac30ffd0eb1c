package sources

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// document is one YAML document of a file.
type document struct {
	// raw is the document's text, without its "---" marker line.
	raw []byte
	// offset is the number of file lines before raw's first line.
	offset int
	// root is the document's content node (nil for an empty document or
	// one that does not parse).
	root *yaml.Node
	// err is the document's syntax error (a *BuildError), nil when it
	// parses.
	err error
}

// line returns the 1-based line of the document's first key or item in its
// file (0 for an empty document).
func (d *document) line() int {
	if d.root == nil {
		return 0
	}
	return d.root.Line + d.offset
}

// splitDocuments splits data into its YAML documents and parses each one.
// Documents are separated by "---" lines (and ended by "..." lines), as the
// YAML spec says; empty and comment-only documents are kept with a nil root.
// A document with a syntax error is kept with a nil root and its err set (a
// *BuildError for file with the file's line); the other documents are
// still parsed. The error returned is the first document's error.
func splitDocuments(file string, data []byte) ([]document, error) {
	var docs []document
	var first error
	start, startLine := 0, 0 // byte and 0-based line where the current document starts
	flush := func(end int) {
		d := document{raw: data[start:end], offset: startLine}
		var n yaml.Node
		if err := yaml.Unmarshal(d.raw, &n); err != nil {
			d.err = yamlError(file, startLine, err)
			if first == nil {
				first = d.err
			}
		} else if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			d.root = n.Content[0]
		}
		docs = append(docs, d)
	}
	line := 0
	for pos := 0; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		text := data[pos:next]
		if isMarker(text, "---") || isMarker(text, "...") {
			flush(pos)
			start, startLine = next, line+1
			if rest := bytes.TrimSpace(text[3:]); len(rest) > 0 && rest[0] != '#' && isMarker(text, "---") {
				// Content on the marker line ("--- {a: 1}"): keep it, blanking the marker.
				start, startLine = pos+3, line
			}
		}
		pos = next
	}
	flush(len(data))
	return docs, first
}

// isMarker reports whether line is the document marker m ("---" or "..."),
// optionally followed by white space or content.
func isMarker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	return len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\n' || line[3] == '\r'
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// parserProblems are the messages of the YAML parser (as opposed to its
// scanner). For them go.yaml.in/yaml/v3 reports a 0-based line; scanner and
// decoder errors report 1-based lines.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlError turns a YAML parser error into a *BuildError, moving the line
// the parser reports (relative to the document) into BuildError.Line.
func yamlError(file string, offset int, err error) error {
	msg := err.Error()
	line := offset + 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		msg = "yaml: " + msg[len(m[0]):]
		if parserProblems[strings.TrimPrefix(msg, "yaml: ")] {
			n++
		}
		line = offset + n
	}
	return &BuildError{File: file, Line: line, Err: errors.New(msg)}
}

// fieldLines returns the line of every field and list item under n, keyed by
// path ("spec.http[0].route[1].destination.subset"), adding offset.
func fieldLines(n *yaml.Node, offset int) map[string]int {
	lines := make(map[string]int)
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Kind != yaml.ScalarNode || k.Value == "<<" {
					continue
				}
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				lines[p] = k.Line + offset
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				lines[p] = c.Line + offset
				walk(c, p)
			}
		}
	}
	if n != nil {
		walk(n, "")
	}
	return lines
}

// lookup returns the node at the mapping keys path under n, or nil.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return n
}

// identity is what names an Object.
type identity struct {
	apiVersion, kind, name, namespace string
}

// identify reads apiVersion, kind, metadata.name and metadata.namespace
// from the object node n (offset: file lines before n's document),
// requiring the first three.
func identify(file string, n *yaml.Node, offset int) (identity, error) {
	fail := func(line int, format string, args ...any) (identity, error) {
		return identity{}, &BuildError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	if n.Kind != yaml.MappingNode {
		return fail(n.Line+offset, "document is not a mapping (it is a %s)", kindName(n.Kind))
	}
	var id identity
	for _, f := range []struct {
		dst  *string
		path []string
	}{
		{&id.apiVersion, []string{"apiVersion"}},
		{&id.kind, []string{"kind"}},
		{&id.name, []string{"metadata", "name"}},
		{&id.namespace, []string{"metadata", "namespace"}},
	} {
		name := strings.Join(f.path, ".")
		v := lookup(n, f.path...)
		if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			if name == "metadata.namespace" {
				continue
			}
			line := n.Line + offset
			if v != nil {
				line = v.Line + offset
			}
			return fail(line, "missing %s", name)
		}
		if v.Kind != yaml.ScalarNode {
			return fail(v.Line+offset, "%s is a %s, not a string", name, kindName(v.Kind))
		}
		if v.Value == "" && name != "metadata.namespace" {
			return fail(v.Line+offset, "empty %s", name)
		}
		*f.dst = v.Value
	}
	return id, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

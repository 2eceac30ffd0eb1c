package sources

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ProblemReason says what is wrong with a document. Reasons are stable:
// the compiler maps each one to a diagnostic code.
type ProblemReason string

// Problem reasons.
const (
	// ReasonInvalidYAML: the document is not valid YAML. It is left out.
	ReasonInvalidYAML ProblemReason = "InvalidYAML"
	// ReasonNotAnObject: the document is YAML but not a mapping (a list or
	// a scalar). It is left out.
	ReasonNotAnObject ProblemReason = "NotAnObject"
	// ReasonMissingField: apiVersion, kind or metadata.name is missing,
	// empty or not a string. The document is left out.
	ReasonMissingField ProblemReason = "MissingField"
	// ReasonDuplicateKey: a mapping has the same key twice (YAML requires
	// unique keys; decoders keep the last one silently). The Object is
	// still returned, so the rest of it is checked.
	ReasonDuplicateKey ProblemReason = "DuplicateKey"
)

// Problem is a defect of one document found while reading it: sources
// reports it and goes on with the other documents, so one bad file does
// not hide the findings in the rest of the repository. Problems are about
// YAML structure only; whether a readable object is valid policy is the
// compiler's business.
type Problem struct {
	// Origin is the file and line of the defect (the offending line, not
	// only the document's first line).
	Origin Origin `json:"origin"`
	// Reason classifies the defect.
	Reason ProblemReason `json:"reason"`
	// Kind, Namespace and Name identify the document, when they could be
	// read ("" otherwise).
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Field is the dotted path of the offending field ("metadata.name",
	// "spec.hosts"), or "" for the whole document.
	Field string `json:"field,omitempty"`
	// Message says what is wrong, in one line, without the origin.
	Message string `json:"message"`
}

// String reads "file:line: message".
func (p Problem) String() string {
	if o := p.Origin.String(); o != "" {
		return o + ": " + p.Message
	}
	return p.Message
}

// problemOf turns a *BuildError found in one document into a Problem.
func problemOf(reason ProblemReason, err error) Problem {
	p := Problem{Reason: reason, Message: err.Error()}
	if be, ok := err.(*BuildError); ok {
		p.Origin, p.Message = be.Origin(), be.Err.Error()
	}
	return p
}

// duplicateKeys returns a Problem for every mapping key under n that
// repeats an earlier key of the same mapping, at the repeated key's line.
func duplicateKeys(file string, n *yaml.Node, offset int) []Problem {
	var out []Problem
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			seen := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Kind != yaml.ScalarNode || k.Value == "<<" {
					continue
				}
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if first, ok := seen[k.Value]; ok {
					out = append(out, Problem{
						Origin: Origin{File: file, Line: k.Line + offset}, Reason: ReasonDuplicateKey, Field: p,
						Message: fmt.Sprintf("duplicate key %q (first at line %d); YAML keys must be unique and decoders keep only the last one", k.Value, first+offset),
					})
				} else {
					seen[k.Value] = k.Line
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	if n != nil {
		walk(n, "")
	}
	return out
}

// isNull reports whether n is an explicit YAML null ("null", "~"), which
// kubectl skips like an empty document.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// isListKind reports whether kind is a list of objects whose items
// kubectl applies one by one: "List", or a typed list such as
// "ServiceList".
func isListKind(kind string) bool {
	return kind == "List" || (strings.HasSuffix(kind, "List") && len(kind) > len("List"))
}

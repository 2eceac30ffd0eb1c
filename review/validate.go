package review

import (
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// Formats WriteDiagnostics accepts besides text and json.
const (
	FormatGitHub = "github"
	FormatJUnit  = "junit"
)

// Validation is the result of `gitmesh validate`: the objects built and
// the analyzers' findings on them.
type Validation struct {
	// Objects are the built objects.
	Objects []sources.Object
	// Namespace is the namespace of objects that name none.
	Namespace string
	// Diagnostics are the findings, sorted by file, line and code.
	Diagnostics compiler.Diagnostics
}

// Validate builds path (relative to root) as the controller would, parses
// and analyzes its objects, and, when they have no errors, compiles them
// for a generic sidecar in namespace so a revision that would not compile
// fails here too. Its error means the policy could not be built (a
// kustomize failure, an unreadable tree) or compiled; findings, including
// documents sources could not read (bad YAML, no metadata.name), are in
// the Validation.
func Validate(root, path, namespace string) (*Validation, error) {
	objs, problems, err := sources.Build(root, path)
	if err != nil {
		return nil, err
	}
	policy, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(namespace), compiler.WithProblems(problems))
	if !diags.HasErrors() {
		if _, err := policy.Compile(nodemeta.SidecarClass(namespace, ""), nil); err != nil {
			return nil, fmt.Errorf("compiling: %w", err)
		}
	}
	return &Validation{Objects: objs, Namespace: namespace, Diagnostics: diags}, nil
}

// AtOrAbove reports whether a finding of severity threshold or more
// serious exists (threshold error or warning; info counts only for info).
func (v *Validation) AtOrAbove(threshold compiler.Severity) bool {
	rank := severityRank(threshold)
	for _, d := range v.Diagnostics {
		if severityRank(d.Severity) >= rank {
			return true
		}
	}
	return false
}

func severityRank(s compiler.Severity) int {
	switch s {
	case compiler.SeverityError:
		return 3
	case compiler.SeverityWarning:
		return 2
	}
	return 1
}

func (v *Validation) count(s compiler.Severity) int {
	n := 0
	for _, d := range v.Diagnostics {
		if d.Severity == s {
			n++
		}
	}
	return n
}

// Write renders v in format: text (one line per finding and a total), json,
// github (workflow command annotations: ::error file=F,line=L::...) or
// junit (one testcase per object, a failure per error finding).
func (v *Validation) Write(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		for _, d := range v.Diagnostics {
			fmt.Fprintln(w, d.String())
		}
		_, err := fmt.Fprintf(w, "%d object(s), %d error(s), %d warning(s)\n", len(v.Objects), v.count(compiler.SeverityError), v.count(compiler.SeverityWarning))
		return err
	case FormatJSON:
		diags := v.Diagnostics
		if diags == nil {
			diags = compiler.Diagnostics{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"objects": len(v.Objects), "diagnostics": diags, "errors": v.count(compiler.SeverityError), "warnings": v.count(compiler.SeverityWarning)})
	case FormatGitHub:
		return v.writeGitHub(w)
	case FormatJUnit:
		return v.writeJUnit(w)
	}
	return fmt.Errorf("rendering diagnostics: unknown format %q (want text, json, github or junit)", format)
}

// writeGitHub writes one workflow command per finding: errors as ::error,
// warnings as ::warning, info as ::notice.
func (v *Validation) writeGitHub(w io.Writer) error {
	for _, d := range v.Diagnostics {
		cmd := "notice"
		switch d.Severity {
		case compiler.SeverityError:
			cmd = "error"
		case compiler.SeverityWarning:
			cmd = "warning"
		}
		props := []string{"file=" + ghProperty(d.Origin.File)}
		if d.Origin.Line > 0 {
			props = append(props, fmt.Sprintf("line=%d", d.Origin.Line))
		}
		props = append(props, "title="+ghProperty(d.Code))
		msg := d.Message
		if d.Kind != "" {
			msg = fmt.Sprintf("%s %s/%s: %s", d.Kind, d.Namespace, d.Name, msg)
		}
		if d.Field != "" {
			msg += " (" + d.Field + ")"
		}
		if _, err := fmt.Fprintf(w, "::%s %s::%s\n", cmd, strings.Join(props, ","), ghData(msg)); err != nil {
			return err
		}
	}
	return nil
}

// ghData escapes a workflow command's message.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProperty escapes a workflow command's property value.
func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string         `xml:"name,attr"`
	Classname string         `xml:"classname,attr"`
	File      string         `xml:"file,attr,omitempty"`
	Line      int            `xml:"line,attr,omitempty"`
	Failures  []junitFailure `xml:"failure"`
	SystemOut string         `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes one testsuite "gitmesh validate" with a testcase per
// object (name "Kind namespace/name", classname its file): a failure per
// error finding; warnings go to system-out. Findings that name no object
// get a testcase per file.
func (v *Validation) writeJUnit(w io.Writer) error {
	ns := cmp.Or(v.Namespace, compiler.DefaultNamespace)
	suite := junitSuite{Name: "gitmesh validate"}
	index := map[string]int{}
	for _, o := range v.Objects {
		ons := cmp.Or(o.Namespace, ns)
		key := o.Kind + "\x00" + ons + "\x00" + o.Name
		if _, ok := index[key]; ok {
			continue
		}
		index[key] = len(suite.Cases)
		suite.Cases = append(suite.Cases, junitCase{
			Name: fmt.Sprintf("%s %s/%s", o.Kind, ons, o.Name), Classname: o.Origin.File,
			File: o.Origin.File, Line: o.Origin.Line,
		})
	}
	for _, d := range v.Diagnostics {
		key := d.Kind + "\x00" + d.Namespace + "\x00" + d.Name
		i, ok := index[key]
		if !ok || d.Kind == "" {
			key = "file\x00" + d.Origin.File
			if i, ok = index[key]; !ok {
				i = len(suite.Cases)
				index[key] = i
				suite.Cases = append(suite.Cases, junitCase{Name: d.Origin.File, Classname: d.Origin.File, File: d.Origin.File})
			}
		}
		c := &suite.Cases[i]
		if d.Severity == compiler.SeverityError {
			c.Failures = append(c.Failures, junitFailure{Message: d.Code + ": " + d.Message, Type: d.Code, Text: d.String()})
			continue
		}
		c.SystemOut += d.String() + "\n"
	}
	sort.SliceStable(suite.Cases, func(i, j int) bool { return suite.Cases[i].Classname < suite.Cases[j].Classname })
	for _, c := range suite.Cases {
		suite.Tests++
		if len(c.Failures) > 0 {
			suite.Failures++
		}
	}
	doc := junitSuites{Name: "gitmesh", Tests: suite.Tests, Failures: suite.Failures, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("writing junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// Package grafanatest reads the Grafana dashboards the chart ships
// (charts/gitmesh/dashboards) for tests: it checks their structure and
// lists every PromQL expression in them, panels, rows' nested panels and
// template variables alike, with Grafana's variables substituted.
package grafanatest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// Dir returns the absolute path of charts/gitmesh/dashboards, found from
// this source file.
func Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("finding charts/gitmesh/dashboards: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "gitmesh", "dashboards")
}

// Dashboard is the part of Grafana's dashboard JSON model the tests read.
type Dashboard struct {
	// File is the file's base name.
	File          string `json:"-"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Regex      string          `json:"regex"`
	Datasource *Datasource     `json:"datasource"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Options    []struct {
		Value string `json:"value"`
	} `json:"options"`
}

// PromQL returns a query variable's query ("" for other types): the
// query.query of Grafana's Prometheus variable editor, or a plain string.
func (v Variable) PromQL() string {
	if v.Type != "query" {
		return ""
	}
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

// Datasource is a panel's, target's or variable's data source reference.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a panel or a row.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	GridPos    *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []Target `json:"targets"`
	// Panels are a collapsed row's panels.
	Panels []Panel `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// Load reads every *.json dashboard of dir, sorted by file name.
func Load(tb testing.TB, dir string) []Dashboard {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no dashboards in %s: %v", dir, err)
	}
	sort.Strings(paths)
	var out []Dashboard
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		var d Dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			tb.Fatalf("decoding %s: %v", p, err)
		}
		d.File = filepath.Base(p)
		out = append(out, d)
	}
	return out
}

// AllPanels returns the dashboard's panels, rows' nested panels included,
// rows excluded.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Query is one PromQL expression of a dashboard, with where it is.
type Query struct {
	// Where names the panel and target, or the variable.
	Where string
	// Expr is the expression as written, Grafana variables unsubstituted.
	Expr string
	// Variable is set for a template variable's query.
	Variable *Variable
}

// Queries returns every PromQL expression of the dashboard: its query
// variables' and every panel target's.
func (d Dashboard) Queries() []Query {
	var out []Query
	for i := range d.Templating.List {
		v := &d.Templating.List[i]
		if q := v.PromQL(); q != "" {
			out = append(out, Query{Where: fmt.Sprintf("%s: variable $%s", d.File, v.Name), Expr: q, Variable: v})
		}
	}
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{Where: fmt.Sprintf("%s: panel %d %q target %s", d.File, p.ID, p.Title, t.RefID), Expr: t.Expr})
		}
	}
	return out
}

// varRef matches Grafana's variable syntaxes: $name, ${name}, ${name:fmt}
// and [[name]].
var varRef = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]`)

// Substitute replaces Grafana variables in expr with vars' values, as
// Grafana does; references to unknown names (label_replace's "$1") stay.
func Substitute(expr string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// References returns the variable names expr refers to.
func References(expr string) []string {
	var out []string
	for _, sub := range varRef.FindAllStringSubmatch(expr, -1) {
		out = append(out, sub[1]+sub[2]+sub[3])
	}
	return out
}

// Grafana's global variables, which need no template variable.
var builtins = map[string]bool{
	"__rate_interval": true, "__interval": true, "__interval_ms": true, "__range": true,
	"__range_s": true, "__range_ms": true, "__dashboard": true, "__from": true, "__to": true,
}

// urlRef finds absolute URLs, which a shipped dashboard must not hard-code.
var urlRef = regexp.MustCompile(`https?://`)

// Validate checks d's structure: a uid and title, schemaVersion, a
// datasource variable of type prometheus, unique panel ids, a gridPos
// inside Grafana's 24 columns for every panel, every data source
// reference through ${datasource}, only defined variables referenced (or
// label_replace's "$1"), and no hard-coded URL. raw is the file's bytes.
func Validate(d Dashboard, raw []byte) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(d.File+": "+format, a...)) }
	if d.UID == "" || d.Title == "" {
		bad("uid %q and title %q must be set", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		bad("schemaVersion %d; want 36 or later", d.SchemaVersion)
	}
	vars := map[string]bool{}
	hasDS := false
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
		if v.Type == "query" && !dsRef(v.Datasource) {
			bad("variable $%s: datasource %+v; want ${datasource}", v.Name, v.Datasource)
		}
	}
	if !hasDS {
		bad(`no template variable "datasource" of type datasource with query "prometheus"`)
	}
	ids := map[int]string{}
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
				bad("panel %q: id %d is not unique and positive (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad("panel %d %q: gridPos %+v outside 24 columns", p.ID, p.Title, g)
			}
			if p.Type != "row" {
				if !dsRef(p.Datasource) {
					bad("panel %d %q: datasource %+v; want ${datasource}", p.ID, p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					bad("panel %d %q: no targets", p.ID, p.Title)
				}
				for _, t := range p.Targets {
					if t.Datasource != nil && !dsRef(t.Datasource) {
						bad("panel %d %q target %s: datasource %+v; want ${datasource}", p.ID, p.Title, t.RefID, t.Datasource)
					}
					if strings.TrimSpace(t.Expr) == "" {
						bad("panel %d %q target %s: no expr", p.ID, p.Title, t.RefID)
					}
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, q := range d.Queries() {
		for _, name := range References(q.Expr) {
			if !vars[name] && !builtins[name] && !regexp.MustCompile(`^\d+$`).MatchString(name) {
				bad("%s: $%s is not a template variable", q.Where, name)
			}
		}
	}
	if loc := urlRef.FindIndex(raw); loc != nil {
		bad("hard-coded URL at byte %d: %.60s", loc[0], raw[loc[0]:])
	}
	return errs
}

// dsRef reports whether ds refers to the datasource variable.
func dsRef(ds *Datasource) bool {
	return ds != nil && ds.Type == "prometheus" && (ds.UID == "${datasource}" || ds.UID == "$datasource")
}

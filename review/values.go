package review

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxValueLen bounds how long a value is shown in a FieldChange.
const maxValueLen = 120

// redacted replaces a secret value wherever one would be shown.
const redacted = "<redacted>"

// secretKey matches map keys whose values are secrets.
var secretKey = regexp.MustCompile(`(?i)(password|passwd|secret|token|apikey|api_key|api-key|authorization|credential|privatekey|private_key|bearer)`)

// FieldChange is one changed field of an object or an xDS resource.
type FieldChange struct {
	// Path is dotted from the document root, with list indexes in
	// brackets ("spec.http[0].route[1].weight"): the head index for added
	// and changed fields, the base index for removed ones.
	Path string `json:"path"`
	// Change is added, removed or changed.
	Change string `json:"change"`
	// Old and New are the values, compact and with secrets redacted
	// ("" when absent).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
	// Line is the field's line in the object's head file (its base file
	// for removed objects); 0 when unknown.
	Line int `json:"line,omitempty"`
}

// String returns "path: old -> new", "path: added new" or "path: removed old".
func (c FieldChange) String() string {
	switch c.Change {
	case Added:
		return c.Path + ": added " + c.New
	case Removed:
		return c.Path + ": removed " + c.Old
	}
	return c.Path + ": " + c.Old + " -> " + c.New
}

// decodeJSON decodes JSON keeping numbers as written.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// differ walks two decoded JSON values. It holds no state beyond one walk.
type differ struct {
	// secretTree redacts every leaf (a Kubernetes Secret's data).
	secretTree func(path string) bool
	out        []FieldChange
}

// diff appends the changes between a and b at path.
func (d *differ) diff(path string, a, b any) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			d.diffMaps(path, av, bv)
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			d.diffLists(path, av, bv)
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		d.add(FieldChange{Path: path, Change: Changed, Old: d.show(path, a), New: d.show(path, b)})
	}
}

func (d *differ) add(c FieldChange) {
	d.out = append(d.out, c)
}

func (d *differ) diffMaps(path string, a, b map[string]any) {
	for _, k := range unionNames(a, b) {
		p := joinPath(path, k)
		av, inA := a[k]
		bv, inB := b[k]
		switch {
		case !inA:
			d.add(FieldChange{Path: p, Change: Added, New: d.show(p, bv)})
		case !inB:
			d.add(FieldChange{Path: p, Change: Removed, Old: d.show(p, av)})
		default:
			d.diff(p, av, bv)
		}
	}
}

// diffLists matches elements by their "name" field when every element of
// both lists has a distinct one (subsets, ports, named routes), else by
// index. Lists of scalars (hosts, domains) change as a whole.
func (d *differ) diffLists(path string, a, b []any) {
	if reflect.DeepEqual(a, b) {
		return
	}
	if scalars(a) && scalars(b) {
		d.add(FieldChange{Path: path, Change: Changed, Old: d.show(path, a), New: d.show(path, b)})
		return
	}
	an, aok := names(a)
	bn, bok := names(b)
	if aok && bok {
		for i, n := range bn {
			p := fmt.Sprintf("%s[%d]", path, i)
			if j, ok := indexOf(an, n); ok {
				d.diff(p, a[j], b[i])
			} else {
				d.add(FieldChange{Path: p, Change: Added, New: d.show(p, b[i])})
			}
		}
		for j, n := range an {
			if _, ok := indexOf(bn, n); !ok {
				p := fmt.Sprintf("%s[%d]", path, j)
				d.add(FieldChange{Path: p, Change: Removed, Old: d.show(p, a[j])})
			}
		}
		return
	}
	for i := 0; i < max(len(a), len(b)); i++ {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case i >= len(a):
			d.add(FieldChange{Path: p, Change: Added, New: d.show(p, b[i])})
		case i >= len(b):
			d.add(FieldChange{Path: p, Change: Removed, Old: d.show(p, a[i])})
		default:
			d.diff(p, a[i], b[i])
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func scalars(l []any) bool {
	for _, v := range l {
		switch v.(type) {
		case map[string]any, []any:
			return false
		}
	}
	return true
}

// names returns each element's "name", and whether all have a distinct one.
func names(l []any) ([]string, bool) {
	out := make([]string, len(l))
	seen := map[string]bool{}
	for i, v := range l {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || n == "" || seen[n] {
			return nil, false
		}
		seen[n] = true
		out[i] = n
	}
	return out, len(l) > 0
}

func indexOf(l []string, s string) (int, bool) {
	for i, x := range l {
		if x == s {
			return i, true
		}
	}
	return 0, false
}

// show renders v compactly, with secrets redacted and long values cut.
func (d *differ) show(path string, v any) string {
	if d.secretTree != nil && d.secretTree(path) {
		return redacted
	}
	if secretKey.MatchString(lastKey(path)) {
		return redacted
	}
	s := compact(v)
	if len(s) > maxValueLen {
		s = s[:maxValueLen-3] + "..."
	}
	return s
}

// lastKey is the last map key of a path ("spec.x[0].token" -> "token").
func lastKey(path string) string {
	path = strings.TrimRight(path, "]0123456789[")
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// compact writes v in YAML flow style with sorted keys, redacting secret
// keys and URL passwords.
func compact(v any) string {
	var b strings.Builder
	writeCompact(&b, v)
	return b.String()
}

func writeCompact(b *strings.Builder, v any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k)
			b.WriteString(": ")
			if secretKey.MatchString(k) {
				b.WriteString(redacted)
				continue
			}
			writeCompact(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeCompact(b, e)
		}
		b.WriteByte(']')
	case string:
		b.WriteString(scalarString(redactURL(x)))
	case nil:
		b.WriteString("null")
	default:
		fmt.Fprint(b, x)
	}
}

// scalarString quotes s when it would not read back as the same string.
func scalarString(s string) string {
	if s == "" || strings.ContainsAny(s, ",:{}[]\"'#\n") || s != strings.TrimSpace(s) {
		return strconv.Quote(s)
	}
	switch strings.ToLower(s) {
	case "true", "false", "null", "yes", "no", "on", "off":
		return strconv.Quote(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.Quote(s)
	}
	return s
}

// redactURL hides what may be a credential in a URL: its user info, and
// its path and query (a webhook URL's path is often its token). A bare
// scheme://host[:port] is shown as is.
func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	if u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
		return s
	}
	return u.Scheme + "://" + u.Host + "/" + redacted
}

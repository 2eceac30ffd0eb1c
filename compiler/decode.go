package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"
)

// decodeDocument converts a YAML document into a generic JSON tree
// (map[string]any, []any, string, json.Number, bool, nil). Numbers stay
// json.Number so that ports and weights keep their exact value.
//
// The common shape of a policy document is read by fastYAML; others are
// built straight from the YAML parser's values (yamlTree);
// the few documents yamlTree leaves to encoding/json take the way through
// JSON text, so both ways give the same tree and the same errors.
func decodeDocument(doc []byte) (map[string]any, error) {
	if m, ok := fastYAML(doc); ok {
		return m, nil
	}
	v, err := yamlTree(doc)
	if errors.Is(err, errNotJSONTree) {
		v, err = decodeDocumentJSON(doc)
	}
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("document is %s, not an object", jsonKind(v))
	}
	return m, nil
}

// decodeDocumentJSON is decodeDocument through JSON text: YAMLToJSON,
// then encoding/json with UseNumber.
func decodeDocumentJSON(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeSpec decodes spec (a generic JSON tree at path "spec") into msg.
//
// It first walks the tree against msg's descriptor, reporting unknown
// fields (CodeUnknownField), values of the wrong type (CodeInvalidValue)
// and fields the compiler does not implement (CodeUnsupportedField), each
// with its path. Then it decodes with protojson (unknown fields rejected)
// so that the typed value is exactly what Istio would read. It returns
// false if msg could not be decoded. Most specs take decodeFast, which
// builds the same message from the tree without JSON text.
func decodeSpec(r *reporter, spec any, msg proto.Message) bool {
	w := walker{r: r}
	if spec == nil {
		spec = map[string]any{}
	}
	w.message(msg.ProtoReflect().Descriptor(), spec, "spec")
	if w.schemaErrors > 0 {
		return false
	}
	if decodeFast(spec, msg) {
		return true
	}
	b, err := json.Marshal(spec)
	if err != nil {
		r.errorf(CodeInvalidValue, "spec", "encoding spec: %v", err)
		return false
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, msg); err != nil {
		r.errorf(CodeInvalidValue, pathOfProtoError(spec, err), "%s", cleanProtoError(err))
		return false
	}
	return true
}

// walker checks a generic JSON tree against a message descriptor.
type walker struct {
	r            *reporter
	schemaErrors int
}

func (w *walker) schemaf(code, path, format string, args ...any) {
	w.schemaErrors++
	w.r.errorf(code, path, format, args...)
}

func (w *walker) message(md protoreflect.MessageDescriptor, v any, path string) {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return // well-known types have their own JSON forms; protojson checks them
	}
	m, ok := v.(map[string]any)
	if !ok {
		w.schemaf(CodeInvalidValue, path, "expected an object, got %s", jsonKind(v))
		return
	}
	fields := md.Fields()
	oneofs := map[protoreflect.FullName]string{} // oneof -> key that set it
	for _, key := range sortedKeys(m) {
		val := m[key]
		fpath := path + "." + key
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			msg := fmt.Sprintf("unknown field %q in %s", key, md.Name())
			if s := suggest(key, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.schemaf(CodeUnknownField, fpath, "%s", msg)
			continue
		}
		if val == nil {
			continue // null is the same as absent
		}
		if !supportedFullName(fd.FullName()) {
			w.r.errorf(CodeUnsupportedField, fpath, "field %q is not supported yet", fd.JSONName())
			// Not decoded: its value cannot matter and must not fail decoding.
			// A oneof member keeps a zero value so the oneof stays set and
			// validation does not also report it as missing.
			if z, ok := zeroJSON(fd); ok && fd.ContainingOneof() != nil {
				m[key] = z
			} else {
				delete(m, key)
			}
			continue
		}
		if isDurationField(fd) {
			if str, isStr := val.(string); isStr {
				d, err := time.ParseDuration(str)
				if err != nil {
					w.schemaf(CodeInvalidValue, fpath, "%q is not a duration (for example 5s, 100ms or 1m30s)", str)
					continue
				}
				// Istio reads Go durations ("1m"); protojson only "60s".
				val = protoJSONDuration(d)
				m[key] = val
			}
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, ok := oneofs[od.FullName()]; ok {
				w.schemaf(CodeInvalidValue, fpath, "%q and %q cannot both be set", other, key)
				continue
			}
			oneofs[od.FullName()] = key
		}
		w.field(fd, val, fpath)
	}
}

func (w *walker) field(fd protoreflect.FieldDescriptor, v any, path string) {
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			w.schemaf(CodeInvalidValue, path, "expected an object, got %s", jsonKind(v))
			return
		}
		for _, k := range sortedKeys(m) {
			if kk := fd.MapKey().Kind(); kk != protoreflect.StringKind && kk != protoreflect.BoolKind {
				// Integer keys (PeerAuthentication portLevelMtls ports).
				lo, hi, name := intRange(kk)
				if f, err := strconv.ParseFloat(k, 64); err != nil || f != math.Trunc(f) || f < lo || f > hi {
					w.schemaf(CodeInvalidValue, path+"."+k, "key %q is not a valid %s", k, name)
					continue
				}
			}
			w.single(fd.MapValue(), m[k], path+"."+k)
		}
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			w.schemaf(CodeInvalidValue, path, "expected a list, got %s", jsonKind(v))
			return
		}
		for i, e := range l {
			w.single(fd, e, fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.single(fd, v, path)
	}
}

// single checks one value of fd's kind (a list element, a map value or a
// singular field).
func (w *walker) single(fd protoreflect.FieldDescriptor, v any, path string) {
	kind := fd.Kind()
	if v == nil {
		if kind == protoreflect.MessageKind && fd.Message().FullName() == "google.protobuf.Value" {
			return
		}
		w.schemaf(CodeInvalidValue, path, "expected %s, got null", kindName(fd))
		return
	}
	switch kind {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		w.message(fd.Message(), v, path)
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.schemaf(CodeInvalidValue, path, "expected a boolean, got %s", jsonKind(v))
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			w.schemaf(CodeInvalidValue, path, "expected a string, got %s", jsonKind(v))
		}
	case protoreflect.EnumKind:
		w.enum(fd.Enum(), v, path)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := number(v); !ok {
			w.schemaf(CodeInvalidValue, path, "expected a number, got %s", jsonKind(v))
		}
	default: // integers
		w.integer(kind, v, path)
	}
}

func (w *walker) enum(ed protoreflect.EnumDescriptor, v any, path string) {
	names := func() string {
		var out []string
		vals := ed.Values()
		for i := 0; i < vals.Len(); i++ {
			out = append(out, string(vals.Get(i).Name()))
		}
		return strings.Join(out, ", ")
	}
	switch x := v.(type) {
	case string:
		if ed.Values().ByName(protoreflect.Name(x)) == nil {
			w.schemaf(CodeInvalidValue, path, "%q is not one of %s", x, names())
		}
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			w.schemaf(CodeInvalidValue, path, "%s is not one of %s", x, names())
		}
	default:
		w.schemaf(CodeInvalidValue, path, "expected one of %s, got %s", names(), jsonKind(v))
	}
}

func (w *walker) integer(kind protoreflect.Kind, v any, path string) {
	f, ok := number(v)
	if !ok {
		w.schemaf(CodeInvalidValue, path, "expected an integer, got %s", jsonKind(v))
		return
	}
	lo, hi, name := intRange(kind)
	if f != math.Trunc(f) || f < lo || f > hi {
		w.schemaf(CodeInvalidValue, path, "%v is not a valid %s", v, name)
	}
}

// isDurationField reports whether fd is a singular google.protobuf.Duration.
func isDurationField(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() &&
		fd.Message().FullName() == "google.protobuf.Duration"
}

// protoJSONDuration writes d as protojson reads a Duration ("90s",
// "0.250s").
func protoJSONDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	secs, nanos := d/time.Second, d%time.Second
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	return fmt.Sprintf("%s%d.%09ds", sign, secs, nanos)
}

// number returns the numeric value of a JSON number, or of a string holding
// one (protojson accepts quoted numbers).
func number(v any) (float64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func intRange(kind protoreflect.Kind) (lo, hi float64, name string) {
	switch kind {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return 0, math.MaxUint32, "uint32"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return 0, math.MaxUint64, "uint64"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return math.MinInt64, math.MaxInt64, "int64"
	default:
		return math.MinInt32, math.MaxInt32, "int32"
	}
}

func kindName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "an object"
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "a string"
	case protoreflect.BoolKind:
		return "a boolean"
	case protoreflect.EnumKind:
		return "an enum name"
	}
	return "a number"
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest returns the field JSON name closest to key, if it is close.
func suggest(key string, fields protoreflect.FieldDescriptors) string {
	best, bestDist := "", 3
	lk := strings.ToLower(key)
	for i := 0; i < fields.Len(); i++ {
		name := fields.Get(i).JSONName()
		if d := editDistance(lk, strings.ToLower(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// cleanProtoError drops protojson's "proto: (line 1:23): " prefix, whose
// position refers to the intermediate JSON, not to the user's file.
func cleanProtoError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	s = strings.TrimSpace(strings.ReplaceAll(s, "\u00a0", " "))
	if strings.HasPrefix(s, "(line ") {
		if i := strings.Index(s, "):"); i >= 0 {
			s = strings.TrimSpace(s[i+2:])
		}
	}
	return s
}

// pathOfProtoError finds the path of the field a protojson error names,
// falling back to "spec".
func pathOfProtoError(spec any, err error) string {
	msg := cleanProtoError(err)
	var name string
	if i := strings.Index(msg, "field "); i >= 0 {
		name = strings.Trim(strings.Fields(msg[i+len("field "):] + " ")[0], `":,`)
	}
	if name == "" {
		return "spec"
	}
	if p := findKey(spec, "spec", name); p != "" {
		return p
	}
	return "spec"
}

// findKey returns the first path (in sorted order) whose last key is name
// (in its proto or JSON spelling).
func findKey(v any, path, name string) string {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if k == name || jsonCamel(name) == k || strings.HasSuffix(name, "."+k) {
				return path + "." + k
			}
			if p := findKey(x[k], path+"."+k, name); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range x {
			if p := findKey(e, fmt.Sprintf("%s[%d]", path, i), name); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonCamel converts a proto field name to its JSON name (target_port -> targetPort).
func jsonCamel(s string) string {
	var b strings.Builder
	up := false
	for _, c := range s {
		if c == '_' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteRune(c)
	}
	return b.String()
}

// zeroJSON returns the JSON zero value of a singular field, if it has a
// simple one.
func zeroJSON(fd protoreflect.FieldDescriptor) (any, bool) {
	if fd.IsList() || fd.IsMap() {
		return nil, false
	}
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "", true
	case protoreflect.BoolKind:
		return false, true
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
			return nil, false
		}
		return map[string]any{}, true
	default: // numbers and enums
		return json.Number("0"), true
	}
}

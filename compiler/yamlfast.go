package compiler

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// fastYAML decodes the common shape of a policy document, block mappings
// and sequences of one-line scalars and one-line flow collections, into
// the tree yamlTree builds, several times faster than the general
// parser. It answers ok=false for anything outside that shape (anchors,
// tags, block or multi-line scalars, escapes, tabs, bytes that are not
// printable ASCII, documents that do
// not parse, duplicate keys, scalars YAML 1.1 reads in ways of its own),
// and decodeDocument then uses yamlTree. A fuzz test compares the two.
func fastYAML(doc []byte) (map[string]any, bool) {
	for _, c := range doc {
		if (c < 0x20 && c != '\n') || c >= 0x7f { // tabs, CR, controls, anything not ASCII
			return nil, false
		}
	}
	p := fastParser{}
	for raw := range strings.SplitSeq(string(doc), "\n") {
		text := strings.TrimLeft(raw, " ")
		if text == "" || text[0] == '#' {
			continue
		}
		if strings.HasPrefix(raw, "---") || strings.HasPrefix(raw, "...") || text[0] == '%' || strings.HasPrefix(text, "\ufeff") {
			return nil, false
		}
		p.lines = append(p.lines, fastLine{indent: len(raw) - len(text), text: strings.TrimRight(text, " ")})
	}
	if len(p.lines) == 0 || p.lines[0].indent != 0 {
		return nil, false
	}
	v, ok := p.block(0)
	if !ok || p.i != len(p.lines) {
		return nil, false
	}
	m, isMap := v.(map[string]any)
	return m, isMap
}

// fastLine is a line without its indentation.
type fastLine struct {
	indent int
	text   string
}

type fastParser struct {
	lines []fastLine
	i     int // the next line
}

// block parses the mapping or sequence whose lines start at p.i with
// exactly indent spaces.
func (p *fastParser) block(indent int) (any, bool) {
	l := p.lines[p.i]
	if l.indent != indent {
		return nil, false
	}
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func (p *fastParser) mapping(indent int) (any, bool) {
	out := map[string]any{}
	for p.i < len(p.lines) && p.lines[p.i].indent == indent {
		l := p.lines[p.i]
		key, rest, ok := splitKey(l.text)
		if !ok {
			return nil, false
		}
		if _, dup := out[key]; dup {
			return nil, false
		}
		p.i++
		var v any
		switch {
		case rest != "":
			if v, ok = inlineValue(rest); !ok || p.deeper(indent) {
				return nil, false
			}
		case p.i < len(p.lines) && p.lines[p.i].indent > indent:
			if v, ok = p.block(p.lines[p.i].indent); !ok {
				return nil, false
			}
		case p.i < len(p.lines) && p.lines[p.i].indent == indent && isItem(p.lines[p.i].text):
			if v, ok = p.sequence(indent); !ok {
				return nil, false
			}
		}
		out[key] = v
	}
	if p.deeper(indent) {
		return nil, false
	}
	return out, true
}

func (p *fastParser) sequence(indent int) (any, bool) {
	out := []any{}
	for p.i < len(p.lines) && p.lines[p.i].indent == indent && isItem(p.lines[p.i].text) {
		rest := strings.TrimLeft(strings.TrimPrefix(p.lines[p.i].text, "-"), " ")
		col := indent + len(p.lines[p.i].text) - len(rest)
		var v any
		var ok bool
		switch {
		case rest == "":
			p.i++
			if p.i >= len(p.lines) || p.lines[p.i].indent <= indent {
				v, ok = nil, true
			} else {
				v, ok = p.block(p.lines[p.i].indent)
			}
		case isItem(rest) || rest[0] == '?':
			return nil, false
		default:
			if _, _, isKey := splitKey(rest); isKey && rest[0] != '[' && rest[0] != '{' {
				// "- key: value": a mapping whose keys sit at col.
				p.lines[p.i] = fastLine{indent: col, text: rest}
				v, ok = p.mapping(col)
			} else {
				p.i++
				v, ok = inlineValue(rest)
				ok = ok && !p.deeper(indent)
			}
		}
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}

// deeper reports whether the next line is indented more than indent,
// which the shapes fastYAML reads do not allow there.
func (p *fastParser) deeper(indent int) bool {
	return p.i < len(p.lines) && p.lines[p.i].indent > indent
}

func isItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// splitKey splits "key: rest" (rest without its comment) for a plain or
// quoted key that reads as a string.
func splitKey(text string) (key, rest string, ok bool) {
	var after string
	if text[0] == '"' || text[0] == '\'' {
		key, after, ok = quoted(text)
		if !ok || !strings.HasPrefix(after, ":") {
			return "", "", false
		}
		after = after[1:]
	} else {
		i := strings.Index(text, ":")
		for i >= 0 && i+1 < len(text) && text[i+1] != ' ' {
			j := strings.Index(text[i+1:], ":")
			if j < 0 {
				return "", "", false
			}
			i += 1 + j
		}
		if i <= 0 {
			return "", "", false
		}
		key, after = text[:i], text[i+1:]
		if !plainOK(key, false) || strings.HasSuffix(key, " ") {
			return "", "", false
		}
		if s, isStr := plainScalar(key, false).(string); !isStr || s != key || strings.Contains(key, " #") {
			return "", "", false
		}
	}
	if after != "" && after[0] != ' ' {
		return "", "", false
	}
	rest = strings.TrimLeft(after, " ")
	if strings.HasPrefix(rest, "#") {
		rest = ""
	}
	return key, rest, true
}

// inlineValue reads the value after "key: " or "- ": a flow collection, a
// quoted scalar or a plain one, then an optional comment.
func inlineValue(s string) (any, bool) {
	var v any
	var after string
	var ok bool
	switch s[0] {
	case '[', '{':
		v, after, ok = flowValue(s)
	case '"', '\'':
		v, after, ok = quoted(s)
	default:
		plain := s
		if i := strings.Index(s, " #"); i >= 0 {
			plain = strings.TrimRight(s[:i], " ")
		}
		if !plainOK(plain, false) {
			return nil, false
		}
		v = plainScalar(plain, false)
		return v, v != errFast
	}
	after = strings.TrimLeft(after, " ")
	if !ok || (after != "" && after[0] != '#') {
		return nil, false
	}
	return v, true
}

// flowValue reads a one-line flow collection at the start of s, returning
// what follows it.
func flowValue(s string) (any, string, bool) {
	closer := byte(']')
	if s[0] == '{' {
		closer = '}'
	}
	s = strings.TrimLeft(s[1:], " ")
	var list []any
	var obj map[string]any
	if closer == '}' {
		obj = map[string]any{}
	}
	for {
		if s == "" {
			return nil, "", false
		}
		if s[0] == closer && (len(list) == 0 && len(obj) == 0) {
			break
		}
		var key string
		if closer == '}' {
			var ok bool
			var k any
			if k, s, ok = flowScalar(s, true); !ok {
				return nil, "", false
			}
			key, ok = k.(string)
			if _, dup := obj[key]; !ok || dup || !strings.HasPrefix(s, ": ") {
				return nil, "", false
			}
			s = strings.TrimLeft(s[1:], " ")
		}
		var v any
		var ok bool
		if s != "" && (s[0] == '[' || s[0] == '{') {
			v, s, ok = flowValue(s)
		} else {
			v, s, ok = flowScalar(s, false)
		}
		if !ok {
			return nil, "", false
		}
		if closer == '}' {
			obj[key] = v
		} else {
			list = append(list, v)
		}
		s = strings.TrimLeft(s, " ")
		if strings.HasPrefix(s, ",") {
			s = strings.TrimLeft(s[1:], " ")
			if s == "" || s[0] == closer || s[0] == ',' {
				return nil, "", false
			}
			continue
		}
		if s == "" || s[0] != closer {
			return nil, "", false
		}
		break
	}
	if closer == '}' {
		return obj, s[1:], true
	}
	if list == nil {
		list = []any{}
	}
	return list, s[1:], true
}

// flowScalar reads a scalar inside a flow collection: quoted, or plain up
// to ",", "]", "}" or ": ".
func flowScalar(s string, isKey bool) (any, string, bool) {
	if s[0] == '"' || s[0] == '\'' {
		return quoted(s)
	}
	end := len(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ',' || c == ']' || c == '}' || (c == ':' && (i+1 == len(s) || s[i+1] == ' ')) {
			end = i
			break
		}
	}
	plain := strings.TrimRight(s[:end], " ")
	if plain == "" || strings.Contains(plain, " #") || !plainOK(plain, true) {
		return nil, "", false
	}
	v := plainScalar(plain, isKey)
	return v, s[end:], v != errFast
}

// quoted reads a one-line single- or double-quoted scalar at the start of
// s (double-quoted without escapes), returning what follows it.
func quoted(s string) (string, string, bool) {
	q := s[0]
	if q == '"' {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 || strings.ContainsRune(s[1:end+1], '\\') {
			return "", "", false
		}
		return s[1 : end+1], s[end+2:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", "", false
}

// plainOK reports whether s can be a one-line plain scalar as fastYAML
// reads it: no indicator first, no ": " or " #" inside, no flow
// indicators in a flow collection.
func plainOK(s string, flow bool) bool {
	if s == "" || strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`") || strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.HasSuffix(s, ":") {
		return false
	}
	return !flow || !strings.ContainsAny(s, ",[]{}")
}

// errFast marks a plain scalar fastYAML leaves to the general parser.
var errFast = &struct{ string }{"needs the general parser"}

// yaml11Special are the plain scalars go.yaml.in/yaml/v2 reads as
// booleans, nulls, infinities, NaN or merge keys, except those fastYAML
// reads itself ("true", "false", "null", "~").
var yaml11Special = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true, "off": true, "Off": true, "OFF": true,
	"True": true, "TRUE": true, "False": true, "FALSE": true, "Null": true, "NULL": true,
	".inf": true, ".Inf": true, ".INF": true, "+.inf": true, "+.Inf": true, "+.INF": true,
	"-.inf": true, "-.Inf": true, "-.INF": true, ".nan": true, ".NaN": true, ".NAN": true, "<<": true,
}

// yamlStyleFloat is go.yaml.in/yaml/v2's pattern for a float.
var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// plainScalar resolves a plain scalar as go.yaml.in/yaml/v2 does (then
// spelled as jsonTree spells it), or returns errFast. Keys take strings
// only.
func plainScalar(s string, isKey bool) any {
	switch s {
	case "true", "false":
		if isKey {
			return errFast
		}
		return s == "true"
	case "null", "~":
		if isKey {
			return errFast
		}
		return nil
	}
	if yaml11Special[s] {
		return errFast
	}
	switch c := s[0]; {
	case c == '.':
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return errFast
		}
		return s
	case c == '+' || c == '-' || (c >= '0' && c <= '9'):
		if len(s) >= 5 && s[4] == '-' && isDigits(s[:4]) {
			return errFast // may be a timestamp
		}
		plain := strings.ReplaceAll(s, "_", "")
		if strings.HasPrefix(plain, "0b") || strings.HasPrefix(plain, "-0b") {
			return errFast
		}
		if n, err := strconv.ParseInt(plain, 0, 64); err == nil {
			if isKey {
				return errFast
			}
			return json.Number(strconv.FormatInt(n, 10))
		}
		if n, err := strconv.ParseUint(plain, 0, 64); err == nil {
			if isKey {
				return errFast
			}
			return json.Number(strconv.FormatUint(n, 10))
		}
		if yamlStyleFloat.MatchString(plain) {
			if _, err := strconv.ParseFloat(plain, 64); err == nil {
				return errFast
			}
		}
	}
	return s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

package routing

import (
	"context"
	"net/http"

	"github.com/gitmesh/gitmesh/proxy/match"
)

// DynamicMetadata is a request's dynamic metadata as Envoy's filters write
// it: filter name -> key -> value. Values are JSON values as
// encoding/json decodes them (string, float64, bool, nil, []any,
// map[string]any), the shape of a google.protobuf.Struct.
type DynamicMetadata map[string]map[string]any

type dynamicMetadataKey struct{}

// WithMetadata returns r carrying md (the jwt_authn filter's output) for the
// filters and the route matcher after it.
func WithMetadata(r *http.Request, md DynamicMetadata) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), dynamicMetadataKey{}, md))
}

// metadataOf returns the dynamic metadata of r; nil when no filter wrote any.
func metadataOf(r *http.Request) DynamicMetadata {
	md, _ := r.Context().Value(dynamicMetadataKey{}).(DynamicMetadata)
	return md
}

// lookup returns the value at filter and path, and whether it exists.
func (md DynamicMetadata) lookup(filter string, path []string) (any, bool) {
	fm, ok := md[filter]
	if !ok || len(path) == 0 {
		return nil, false
	}
	v, ok := fm[path[0]]
	for _, seg := range path[1:] {
		if !ok {
			return nil, false
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			return nil, false
		}
		v, ok = m[seg]
	}
	return v, ok
}

// MetadataMatcher is a built envoy.type.matcher.v3.MetadataMatcher.
type MetadataMatcher struct {
	// Filter is the metadata namespace (a filter's name), Path the keys
	// into its value; Invert negates the result.
	Filter string
	Path   []string
	Value  ValueMatcher
	Invert bool
}

// Matches applies the matcher as Envoy's Matchers::MetadataMatcher: the
// value at filter/path (absent when missing) against the value matcher,
// inverted by invert.
func (m *MetadataMatcher) Matches(md DynamicMetadata) bool {
	v, ok := md.lookup(m.Filter, m.Path)
	return m.Value.Matches(v, ok) != m.Invert
}

// ValueKind is the form of a ValueMatcher.
type ValueKind int

const (
	// The ValueMatcher forms: null_match, double_match (exact or range),
	// string_match, bool_match, present_match, list_match and or_match.
	ValueNull ValueKind = iota
	ValueDoubleExact
	ValueDoubleRange
	ValueString
	ValueBool
	ValuePresent
	ValueList
	ValueOr
)

// ValueMatcher is a built envoy.type.matcher.v3.ValueMatcher.
type ValueMatcher struct {
	Kind ValueKind
	Str  *match.StringMatch
	Num  float64 // exact, or the range start (inclusive)
	End  float64 // range end (exclusive)
	B    bool    // bool_match, or present_match's value
	// OneOf is list_match.one_of; Alternates are or_match's matchers.
	OneOf      *ValueMatcher
	Alternates []ValueMatcher
}

// Matches reports whether v (present says whether the metadata had a
// value there) matches, as Envoy's ValueMatcher implementations: a missing
// value matches only present_match: false.
func (m *ValueMatcher) Matches(v any, present bool) bool {
	if m.Kind == ValuePresent {
		return m.B == present
	}
	if !present {
		return false
	}
	switch m.Kind {
	case ValueNull:
		return v == nil
	case ValueDoubleExact:
		f, ok := v.(float64)
		return ok && f == m.Num
	case ValueDoubleRange:
		f, ok := v.(float64)
		return ok && f >= m.Num && f < m.End
	case ValueString:
		s, ok := v.(string)
		return ok && m.Str.Matches(s)
	case ValueBool:
		b, ok := v.(bool)
		return ok && b == m.B
	case ValueList:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range list {
			if m.OneOf.Matches(e, true) {
				return true
			}
		}
		return false
	case ValueOr:
		for i := range m.Alternates {
			if m.Alternates[i].Matches(v, present) {
				return true
			}
		}
	}
	return false
}

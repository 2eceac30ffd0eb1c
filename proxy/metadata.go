package proxy

import (
	"context"
	"fmt"
	"net/http"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// dynamicMetadata is a request's dynamic metadata as Envoy's filters write
// it: filter name -> key -> value. Values are JSON values as
// encoding/json decodes them (string, float64, bool, nil, []any,
// map[string]any), the shape of a google.protobuf.Struct.
type dynamicMetadata map[string]map[string]any

type dynamicMetadataKey struct{}

// withMetadata returns r carrying md (the jwt_authn filter's output) for the
// filters and the route matcher after it.
func withMetadata(r *http.Request, md dynamicMetadata) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), dynamicMetadataKey{}, md))
}

// metadataOf returns the dynamic metadata of r; nil when no filter wrote any.
func metadataOf(r *http.Request) dynamicMetadata {
	md, _ := r.Context().Value(dynamicMetadataKey{}).(dynamicMetadata)
	return md
}

// lookup returns the value at filter and path, and whether it exists.
func (md dynamicMetadata) lookup(filter string, path []string) (any, bool) {
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

// metadataMatcher is a built envoy.type.matcher.v3.MetadataMatcher.
type metadataMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

// matches applies the matcher as Envoy's Matchers::MetadataMatcher: the
// value at filter/path (absent when missing) against the value matcher,
// inverted by invert.
func (m *metadataMatcher) matches(md dynamicMetadata) bool {
	v, ok := md.lookup(m.filter, m.path)
	return m.value.matches(v, ok) != m.invert
}

type valueKind int

const (
	valueNull valueKind = iota
	valueDoubleExact
	valueDoubleRange
	valueString
	valueBool
	valuePresent
	valueList
	valueOr
)

// valueMatcher is a built envoy.type.matcher.v3.ValueMatcher.
type valueMatcher struct {
	kind       valueKind
	str        *stringMatch
	num        float64 // exact, or the range start (inclusive)
	end        float64 // range end (exclusive)
	b          bool    // bool_match, or present_match's value
	oneOf      *valueMatcher
	alternates []valueMatcher
}

// matches reports whether v (present says whether the metadata had a
// value there) matches, as Envoy's ValueMatcher implementations: a missing
// value matches only present_match: false.
func (m *valueMatcher) matches(v any, present bool) bool {
	if m.kind == valuePresent {
		return m.b == present
	}
	if !present {
		return false
	}
	switch m.kind {
	case valueNull:
		return v == nil
	case valueDoubleExact:
		f, ok := v.(float64)
		return ok && f == m.num
	case valueDoubleRange:
		f, ok := v.(float64)
		return ok && f >= m.num && f < m.end
	case valueString:
		s, ok := v.(string)
		return ok && m.str.matches(s)
	case valueBool:
		b, ok := v.(bool)
		return ok && b == m.b
	case valueList:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range list {
			if m.oneOf.matches(e, true) {
				return true
			}
		}
		return false
	case valueOr:
		for i := range m.alternates {
			if m.alternates[i].matches(v, present) {
				return true
			}
		}
	}
	return false
}

func buildMetadataMatcher(mm *matcherv3.MetadataMatcher) (*metadataMatcher, *fieldError) {
	if err := checkFields(mm, "filter", "path", "value", "invert"); err != nil {
		return nil, &fieldError{err: err}
	}
	if mm.GetFilter() == "" {
		return nil, fieldErr(".filter", "empty")
	}
	if len(mm.GetPath()) == 0 {
		return nil, fieldErr(".path", "empty")
	}
	out := &metadataMatcher{filter: mm.GetFilter(), invert: mm.GetInvert()}
	for i, seg := range mm.GetPath() {
		if err := checkFields(seg, "key"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".path[%d]", i), "%w", err)
		}
		if seg.GetKey() == "" {
			return nil, fieldErr(fmt.Sprintf(".path[%d].key", i), "empty")
		}
		out.path = append(out.path, seg.GetKey())
	}
	if mm.GetValue() == nil {
		return nil, fieldErr(".value", "missing")
	}
	vm, fe := buildValueMatcher(mm.GetValue())
	if fe != nil {
		fe.field = ".value" + fe.field
		return nil, fe
	}
	out.value = *vm
	return out, nil
}

func buildValueMatcher(vm *matcherv3.ValueMatcher) (*valueMatcher, *fieldError) {
	if err := checkFields(vm, "null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match"); err != nil {
		return nil, &fieldError{err: err}
	}
	out := &valueMatcher{}
	switch p := vm.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		out.kind = valueNull
	case *matcherv3.ValueMatcher_DoubleMatch:
		switch d := p.DoubleMatch.GetMatchPattern().(type) {
		case *matcherv3.DoubleMatcher_Exact:
			out.kind, out.num = valueDoubleExact, d.Exact
		case *matcherv3.DoubleMatcher_Range:
			out.kind, out.num, out.end = valueDoubleRange, d.Range.GetStart(), d.Range.GetEnd()
		default:
			return nil, fieldErr(".double_match", "missing match pattern")
		}
	case *matcherv3.ValueMatcher_StringMatch:
		sm, err := buildStringMatch(p.StringMatch)
		if err != nil {
			return nil, fieldErr(".string_match", "%w", err)
		}
		out.kind, out.str = valueString, sm
	case *matcherv3.ValueMatcher_BoolMatch:
		out.kind, out.b = valueBool, p.BoolMatch
	case *matcherv3.ValueMatcher_PresentMatch:
		out.kind, out.b = valuePresent, p.PresentMatch
	case *matcherv3.ValueMatcher_ListMatch:
		if err := checkFields(p.ListMatch, "one_of"); err != nil {
			return nil, fieldErr(".list_match", "%w", err)
		}
		if p.ListMatch.GetOneOf() == nil {
			return nil, fieldErr(".list_match.one_of", "missing")
		}
		inner, fe := buildValueMatcher(p.ListMatch.GetOneOf())
		if fe != nil {
			fe.field = ".list_match.one_of" + fe.field
			return nil, fe
		}
		out.kind, out.oneOf = valueList, inner
	case *matcherv3.ValueMatcher_OrMatch:
		if err := checkFields(p.OrMatch, "value_matchers"); err != nil {
			return nil, fieldErr(".or_match", "%w", err)
		}
		if len(p.OrMatch.GetValueMatchers()) < 2 {
			// Envoy's validation: at least two value matchers.
			return nil, fieldErr(".or_match.value_matchers", "want at least 2, got %d", len(p.OrMatch.GetValueMatchers()))
		}
		out.kind = valueOr
		for i, alt := range p.OrMatch.GetValueMatchers() {
			a, fe := buildValueMatcher(alt)
			if fe != nil {
				fe.field = fmt.Sprintf(".or_match.value_matchers[%d]%s", i, fe.field)
				return nil, fe
			}
			out.alternates = append(out.alternates, *a)
		}
	default:
		return nil, fieldErr("", "missing match pattern")
	}
	return out, nil
}

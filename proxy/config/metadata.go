package config

import (
	"fmt"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
)

func buildMetadataMatcher(mm *matcherv3.MetadataMatcher) (*routing.MetadataMatcher, *fieldError) {
	if err := checkFields(mm, "filter", "path", "value", "invert"); err != nil {
		return nil, &fieldError{Err: err}
	}
	if mm.GetFilter() == "" {
		return nil, fieldErr(".filter", "empty")
	}
	if len(mm.GetPath()) == 0 {
		return nil, fieldErr(".path", "empty")
	}
	out := &routing.MetadataMatcher{Filter: mm.GetFilter(), Invert: mm.GetInvert()}
	for i, seg := range mm.GetPath() {
		if err := checkFields(seg, "key"); err != nil {
			return nil, fieldErr(fmt.Sprintf(".path[%d]", i), "%w", err)
		}
		if seg.GetKey() == "" {
			return nil, fieldErr(fmt.Sprintf(".path[%d].key", i), "empty")
		}
		out.Path = append(out.Path, seg.GetKey())
	}
	if mm.GetValue() == nil {
		return nil, fieldErr(".value", "missing")
	}
	vm, fe := buildValueMatcher(mm.GetValue())
	if fe != nil {
		fe.Field = ".value" + fe.Field
		return nil, fe
	}
	out.Value = *vm
	return out, nil
}

func buildValueMatcher(vm *matcherv3.ValueMatcher) (*routing.ValueMatcher, *fieldError) {
	if err := checkFields(vm, "null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match"); err != nil {
		return nil, &fieldError{Err: err}
	}
	out := &routing.ValueMatcher{}
	switch p := vm.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		out.Kind = routing.ValueNull
	case *matcherv3.ValueMatcher_DoubleMatch:
		switch d := p.DoubleMatch.GetMatchPattern().(type) {
		case *matcherv3.DoubleMatcher_Exact:
			out.Kind, out.Num = routing.ValueDoubleExact, d.Exact
		case *matcherv3.DoubleMatcher_Range:
			out.Kind, out.Num, out.End = routing.ValueDoubleRange, d.Range.GetStart(), d.Range.GetEnd()
		default:
			return nil, fieldErr(".double_match", "missing match pattern")
		}
	case *matcherv3.ValueMatcher_StringMatch:
		sm, err := buildStringMatch(p.StringMatch)
		if err != nil {
			return nil, fieldErr(".string_match", "%w", err)
		}
		out.Kind, out.Str = routing.ValueString, sm
	case *matcherv3.ValueMatcher_BoolMatch:
		out.Kind, out.B = routing.ValueBool, p.BoolMatch
	case *matcherv3.ValueMatcher_PresentMatch:
		out.Kind, out.B = routing.ValuePresent, p.PresentMatch
	case *matcherv3.ValueMatcher_ListMatch:
		if err := checkFields(p.ListMatch, "one_of"); err != nil {
			return nil, fieldErr(".list_match", "%w", err)
		}
		if p.ListMatch.GetOneOf() == nil {
			return nil, fieldErr(".list_match.one_of", "missing")
		}
		inner, fe := buildValueMatcher(p.ListMatch.GetOneOf())
		if fe != nil {
			fe.Field = ".list_match.one_of" + fe.Field
			return nil, fe
		}
		out.Kind, out.OneOf = routing.ValueList, inner
	case *matcherv3.ValueMatcher_OrMatch:
		if err := checkFields(p.OrMatch, "value_matchers"); err != nil {
			return nil, fieldErr(".or_match", "%w", err)
		}
		if len(p.OrMatch.GetValueMatchers()) < 2 {

			return nil, fieldErr(".or_match.value_matchers", "want at least 2, got %d", len(p.OrMatch.GetValueMatchers()))
		}
		out.Kind = routing.ValueOr
		for i, alt := range p.OrMatch.GetValueMatchers() {
			a, fe := buildValueMatcher(alt)
			if fe != nil {
				fe.Field = fmt.Sprintf(".or_match.value_matchers[%d]%s", i, fe.Field)
				return nil, fe
			}
			out.Alternates = append(out.Alternates, *a)
		}
	default:
		return nil, fieldErr("", "missing match pattern")
	}
	return out, nil
}

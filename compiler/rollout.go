package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
)

// RolloutPolicy returns the revision's RolloutPolicy, or nil when it has
// none (the caller then uses v1alpha1.Default()) or p is nil. A revision
// has at most one valid RolloutPolicy (see CodeInvalidRolloutPolicy and
// CodeConflictingRolloutPolicies).
func (p *Policy) RolloutPolicy() *v1alpha1.RolloutPolicy {
	if p == nil {
		return nil
	}
	return p.rollout
}

// parseRolloutPolicy decodes a gitmesh.io/v1alpha1 RolloutPolicy strictly
// (an unknown field is CodeUnknownField), validates it with
// v1alpha1.RolloutPolicy.Validate (each problem is
// CodeInvalidRolloutPolicy at its field) and keeps it when valid.
func (p *Policy) parseRolloutPolicy(r *reporter, doc map[string]any) {
	body := map[string]any{}
	for k, v := range doc {
		if k != "metadata" && k != "status" {
			body[k] = v
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		r.errorf(CodeInvalidValue, "spec", "encoding RolloutPolicy: %v", err)
		return
	}
	rp := &v1alpha1.RolloutPolicy{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(rp); err != nil {
		reportJSONError(r, body, err)
		return
	}
	rp.Metadata = v1alpha1.ObjectMeta{Name: r.obj.Name, Namespace: r.ns}
	if md, ok := doc["metadata"].(map[string]any); ok {
		rp.Metadata.Labels = stringMap(md["labels"])
		rp.Metadata.Annotations = stringMap(md["annotations"])
	}
	if errs := rp.Validate(); len(errs) > 0 {
		for _, fe := range errs {
			r.errorf(CodeInvalidRolloutPolicy, fe.Path, "%s", fe.Message)
		}
		return
	}
	if p.rollout != nil {
		first := p.rolloutObj
		r.errorf(CodeConflictingRolloutPolicies, "metadata.name", "RolloutPolicy %s/%s is already defined at %s; a revision has at most one",
			p.rollout.Metadata.Namespace, p.rollout.Metadata.Name, first.Origin)
		return
	}
	p.rollout = rp
	p.rolloutObj = *r.obj
}

// reportJSONError reports an encoding/json decoding error at the field it
// names.
func reportJSONError(r *reporter, body map[string]any, err error) {
	var typeErr *json.UnmarshalTypeError
	msg := strings.TrimPrefix(err.Error(), "json: ")
	path := "spec"
	switch {
	case errors.As(err, &typeErr):
		msg = fmt.Sprintf("expected %s, got a %s", typeErr.Type, typeErr.Value)
		if p := findPath(body, typeErr.Field); p != "" {
			path = p
		}
		r.errorf(CodeInvalidValue, path, "%s", msg)
	case strings.HasPrefix(msg, "unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
		if p := findPath(body, name); p != "" {
			path = p
		}
		r.errorf(CodeUnknownField, path, "unknown field %q in RolloutPolicy", name)
	default:
		r.errorf(CodeInvalidValue, path, "%s", msg)
	}
}

// findPath finds the path of a dotted field name ("spec.waves.percent" or
// just "percent") in a generic JSON tree, adding list indexes.
func findPath(tree map[string]any, field string) string {
	parts := strings.Split(field, ".")
	last := parts[len(parts)-1]
	for _, k := range sortedKeys(tree) {
		if k == last && len(parts) == 1 {
			return k
		}
		if p := findKey(tree[k], k, last); p != "" {
			return p
		}
	}
	return ""
}

func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

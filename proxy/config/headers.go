package config

import (
	"fmt"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"net/http"
	"strings"
)

// buildHeaderMutation validates one level's additions and removals; nil
// when both are empty. field is the prefix of the field paths ("" or
// ".route"); the names are request_/response_headers_to_add/_to_remove.
func buildHeaderMutation(field, kind string, add []*corev3.HeaderValueOption, remove []string) (*routing.HeaderMutation, *fieldError) {
	if len(add) == 0 && len(remove) == 0 {
		return nil, nil
	}
	m := &routing.HeaderMutation{}
	for i, name := range remove {
		f := fmt.Sprintf("%s.%s_headers_to_remove[%d]", field, kind, i)
		if err := checkHeaderName(name); err != nil {
			return nil, fieldErr(f, "%w", err)
		}
		m.Remove = append(m.Remove, http.CanonicalHeaderKey(name))
	}
	for i, o := range add {
		f := fmt.Sprintf("%s.%s_headers_to_add[%d]", field, kind, i)
		if err := checkFields(o, "header", "append", "append_action", "keep_empty_value"); err != nil {
			return nil, fieldErr(f, "%w", err)
		}
		h := o.GetHeader()
		if err := checkFields(h, "key", "value"); err != nil {
			return nil, fieldErr(f+".header", "%w", err)
		}
		if err := checkHeaderName(h.GetKey()); err != nil {
			return nil, fieldErr(f+".header.key", "%w", err)
		}
		value, err := literalHeaderValue(h.GetValue())
		if err != nil {
			return nil, fieldErr(f+".header.value", "%w", err)
		}
		a := routing.HeaderAdd{Name: http.CanonicalHeaderKey(h.GetKey()), Value: value, KeepEmpty: o.GetKeepEmptyValue()}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.Action = routing.AppendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.Action = routing.AddIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			a.Action = routing.OverwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.Action = routing.OverwriteIfExists
		default:
			return nil, fieldErr(f+".append_action", "%s: %w", o.GetAppendAction(), ErrUnsupported)
		}
		if ap := o.GetAppend(); ap != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fieldErr(f+".append", "append and append_action are mutually exclusive")
			}
			if !ap.GetValue() {
				a.Action = routing.OverwriteIfExistsOrAdd
			}
		}
		m.Add = append(m.Add, a)
	}
	return m, nil
}

// checkHeaderName rejects names Envoy does not let routes modify.
func checkHeaderName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty header name")
	case strings.HasPrefix(name, ":"), strings.EqualFold(name, "host"):
		return fmt.Errorf("header %q: pseudo-headers and host cannot be modified here (use host_rewrite_literal): %w", name, ErrUnsupported)
	}
	return nil
}

// literalHeaderValue returns a header value without Envoy's %COMMAND%
// substitutions: "%%" is a literal "%"; any other command is unsupported.
func literalHeaderValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", fmt.Errorf("value %q: %%COMMAND%% substitutions: %w", v, ErrUnsupported)
	}
	return b.String(), nil
}

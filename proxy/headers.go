package proxy

import (
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerMutation is one level's request_headers_to_add/_to_remove (or the
// response ones): a route configuration, a virtual host, a route or a
// weighted cluster. Removals apply before additions, as in Envoy.
type headerMutation struct {
	remove []string // canonical names
	add    []headerAdd
}

type headerAction int

const (
	appendIfExistsOrAdd headerAction = iota
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

type headerAdd struct {
	name      string // canonical
	value     string
	action    headerAction
	keepEmpty bool
}

// buildHeaderMutation validates one level's additions and removals; nil
// when both are empty. field is the prefix of the field paths ("" or
// ".route"); the names are request_/response_headers_to_add/_to_remove.
func buildHeaderMutation(field, kind string, add []*corev3.HeaderValueOption, remove []string) (*headerMutation, *fieldError) {
	if len(add) == 0 && len(remove) == 0 {
		return nil, nil
	}
	m := &headerMutation{}
	for i, name := range remove {
		f := fmt.Sprintf("%s.%s_headers_to_remove[%d]", field, kind, i)
		if err := checkHeaderName(name); err != nil {
			return nil, fieldErr(f, "%w", err)
		}
		m.remove = append(m.remove, http.CanonicalHeaderKey(name))
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
		a := headerAdd{name: http.CanonicalHeaderKey(h.GetKey()), value: value, keepEmpty: o.GetKeepEmptyValue()}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.action = appendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.action = addIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			a.action = overwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.action = overwriteIfExists
		default:
			return nil, fieldErr(f+".append_action", "%s: %w", o.GetAppendAction(), errUnsupported)
		}
		if ap := o.GetAppend(); ap != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fieldErr(f+".append", "append and append_action are mutually exclusive")
			}
			if !ap.GetValue() {
				a.action = overwriteIfExistsOrAdd
			}
		}
		m.add = append(m.add, a)
	}
	return m, nil
}

// checkHeaderName rejects names Envoy does not let routes modify.
func checkHeaderName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty header name")
	case strings.HasPrefix(name, ":"), strings.EqualFold(name, "host"):
		return fmt.Errorf("header %q: pseudo-headers and host cannot be modified here (use host_rewrite_literal): %w", name, errUnsupported)
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
		return "", fmt.Errorf("value %q: %%COMMAND%% substitutions: %w", v, errUnsupported)
	}
	return b.String(), nil
}

// apply mutates h. A nil mutation does nothing.
func (m *headerMutation) apply(h http.Header) {
	if m == nil {
		return
	}
	for _, name := range m.remove {
		delete(h, name)
	}
	for _, a := range m.add {
		if a.value == "" && !a.keepEmpty {
			continue
		}
		_, exists := h[a.name]
		switch a.action {
		case appendIfExistsOrAdd:
			h[a.name] = append(h[a.name], a.value)
		case addIfAbsent:
			if !exists {
				h[a.name] = []string{a.value}
			}
		case overwriteIfExistsOrAdd:
			h[a.name] = []string{a.value}
		case overwriteIfExists:
			if exists {
				h[a.name] = []string{a.value}
			}
		}
	}
}

// headerLevels are the mutations of one route, most specific first (weighted
// cluster, route, virtual host, route configuration): Envoy applies them in
// this order, so with overwrite the least specific level wins.
type headerLevels struct {
	request, response []*headerMutation
}

func (l *headerLevels) applyRequest(wc *weightedCluster, h http.Header) {
	if wc != nil {
		wc.requestHeaders.apply(h)
	}
	for _, m := range l.request {
		m.apply(h)
	}
}

func (l *headerLevels) applyResponse(wc *weightedCluster, h http.Header) {
	if wc != nil {
		wc.responseHeaders.apply(h)
	}
	for _, m := range l.response {
		m.apply(h)
	}
}

// appendNonNil appends the non-nil mutations.
func appendNonNil(dst []*headerMutation, ms ...*headerMutation) []*headerMutation {
	for _, m := range ms {
		if m != nil {
			dst = append(dst, m)
		}
	}
	return dst
}

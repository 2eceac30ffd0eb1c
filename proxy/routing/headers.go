package routing

import (
	"net/http"
)

// HeaderMutation is one level's request_headers_to_add/_to_remove (or the
// response ones): a route configuration, a virtual host, a route or a
// weighted cluster. Removals apply before additions, as in Envoy.
type HeaderMutation struct {
	Remove []string // canonical names
	Add    []HeaderAdd
}

// HeaderAction is a HeaderValueOption's append_action.
type HeaderAction int

const (
	// The append actions, as Envoy names them.
	AppendIfExistsOrAdd HeaderAction = iota
	AddIfAbsent
	OverwriteIfExistsOrAdd
	OverwriteIfExists
)

// HeaderAdd is one header to add or set.
type HeaderAdd struct {
	Name   string // canonical
	Value  string
	Action HeaderAction
	// KeepEmpty is keep_empty_value: an empty value is still added.
	KeepEmpty bool
}

// Apply mutates h. A nil mutation does nothing.
func (m *HeaderMutation) Apply(h http.Header) {
	if m == nil {
		return
	}
	for _, name := range m.Remove {
		delete(h, name)
	}
	for _, a := range m.Add {
		if a.Value == "" && !a.KeepEmpty {
			continue
		}
		_, exists := h[a.Name]
		switch a.Action {
		case AppendIfExistsOrAdd:
			h[a.Name] = append(h[a.Name], a.Value)
		case AddIfAbsent:
			if !exists {
				h[a.Name] = []string{a.Value}
			}
		case OverwriteIfExistsOrAdd:
			h[a.Name] = []string{a.Value}
		case OverwriteIfExists:
			if exists {
				h[a.Name] = []string{a.Value}
			}
		}
	}
}

// HeaderLevels are the mutations of one route, most specific first (weighted
// cluster, route, virtual host, route configuration): Envoy applies them in
// this order, so with overwrite the least specific level wins.
type HeaderLevels struct {
	// Request and Response are the request and response mutations.
	Request, Response []*HeaderMutation
}

// ApplyRequest applies the request mutations to h, wc's first (nil: none).
func (l *HeaderLevels) ApplyRequest(wc *WeightedCluster, h http.Header) {
	if wc != nil {
		wc.RequestHeaders.Apply(h)
	}
	for _, m := range l.Request {
		m.Apply(h)
	}
}

// ApplyResponse applies the response mutations to h, wc's first (nil: none).
func (l *HeaderLevels) ApplyResponse(wc *WeightedCluster, h http.Header) {
	if wc != nil {
		wc.ResponseHeaders.Apply(h)
	}
	for _, m := range l.Response {
		m.Apply(h)
	}
}

// AppendNonNil appends the non-nil mutations.
func AppendNonNil(dst []*HeaderMutation, ms ...*HeaderMutation) []*HeaderMutation {
	for _, m := range ms {
		if m != nil {
			dst = append(dst, m)
		}
	}
	return dst
}

package compiler

import (
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// anyTypes tells walkAnys which message types can hold an Any somewhere
// below them, so that it does not range over the many sub-messages that
// cannot (durations, addresses, matchers, wrappers). The zero value is
// ready to use and safe for concurrent use.
type anyTypes struct {
	mu    sync.Mutex                     // guards reach
	reach map[protoreflect.FullName]bool // by message type: an Any is reachable
}

// mayHold reports whether a message of type md can hold an Any in one of
// its fields, at any depth. google.protobuf.Struct and its parts count as
// holding none, as walkAnys does not look into them.
func (t *anyTypes) mayHold(md protoreflect.MessageDescriptor) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.reach[md.FullName()]; ok {
		return v
	}
	if t.reach == nil {
		t.reach = map[protoreflect.FullName]bool{}
	}
	// A depth-first search from md finds an Any if one is reachable; only
	// md's answer is kept, since inner types may have been cut short by
	// the visited set.
	v := reachesAny(md, map[protoreflect.FullName]bool{})
	t.reach[md.FullName()] = v
	return v
}

func reachesAny(md protoreflect.MessageDescriptor, visited map[protoreflect.FullName]bool) bool {
	switch md.FullName() {
	case "google.protobuf.Any":
		return true
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		return false
	}
	if visited[md.FullName()] {
		return false
	}
	visited[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			continue
		}
		if reachesAny(fd.Message(), visited) {
			return true
		}
	}
	return false
}

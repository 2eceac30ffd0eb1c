package compiler

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
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

// validateEncoded is validateDeep for m whose deterministic encoding is
// b: ValidateAll on m, then the Anys found by walking b (the wire format
// is read far faster than m's fields by reflection), each unpacked,
// validated and walked in turn.
func validateEncoded(m proto.Message, b []byte, types *anyTypes) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return walkAnysWire(b, m.ProtoReflect().Descriptor(), types)
}

// walkAnysWire finds the Anys in b, an encoded message of type md.
func walkAnysWire(b []byte, md protoreflect.MessageDescriptor, types *anyTypes) error {
	switch md.FullName() {
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		return nil
	case "google.protobuf.Any":
		return validateAnyWire(b, types)
	}
	if !types.mayHold(md) {
		return nil
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("walking %s: %w", md.FullName(), protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("walking %s: %w", md.FullName(), protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("walking %s: %w", md.FullName(), protowire.ParseError(n))
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil || (fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind) {
			continue
		}
		if err := walkAnysWire(v, fd.Message(), types); err != nil {
			return err
		}
	}
	return nil
}

// validateAnyWire unpacks and validates an encoded Any, with walkAnys's
// errors.
func validateAnyWire(b []byte, types *anyTypes) error {
	a := &anypb.Any{}
	if err := proto.Unmarshal(b, a); err != nil {
		return fmt.Errorf("unpacking an Any: %w", err)
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", a.GetTypeUrl(), err)
	}
	if err := validateEncoded(inner, a.GetValue(), types); err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

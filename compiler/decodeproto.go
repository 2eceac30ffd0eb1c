package compiler

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// errNeedsProtoJSON is fillMessage's answer for a value it leaves to
// protojson, which then decodes the whole spec and names any error.
var errNeedsProtoJSON = errors.New("value needs protojson")

// fillMessage sets m from a generic JSON tree as protojson.Unmarshal of
// the tree's JSON text would, without writing that text: the same field
// lookup (JSON name, then proto name), null as absent, lists and maps
// through Mutable, sub-messages through NewField and Set. It handles the
// shapes a valid Istio spec has after walker checked it, and answers
// errNeedsProtoJSON for anything else (a value protojson would refuse or
// read in a way of its own: quoted numbers, bytes, NaN, extensions);
// well-known types are decoded by protojson one by one.
func fillMessage(m protoreflect.Message, v any) error {
	md := m.Descriptor()
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return fillWellKnown(m, v)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return errNeedsProtoJSON
	}
	fields := md.Fields()
	seen := make(map[protoreflect.FieldNumber]bool, len(obj))
	seenOneof := map[protoreflect.FullName]bool{}
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil || seen[fd.Number()] {
			return errNeedsProtoJSON
		}
		seen[fd.Number()] = true
		if val == nil {
			if fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == "google.protobuf.Value" ||
				fd.Kind() == protoreflect.EnumKind && fd.Enum().FullName() == "google.protobuf.NullValue" {
				return errNeedsProtoJSON
			}
			continue
		}
		var err error
		switch {
		case fd.IsList():
			err = fillList(m.Mutable(fd).List(), fd, val)
		case fd.IsMap():
			err = fillMap(m.Mutable(fd).Map(), fd, val)
		default:
			if od := fd.ContainingOneof(); od != nil {
				if seenOneof[od.FullName()] {
					return errNeedsProtoJSON
				}
				seenOneof[od.FullName()] = true
			}
			if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
				f := m.NewField(fd)
				if err := fillMessage(f.Message(), val); err != nil {
					return err
				}
				m.Set(fd, f)
				continue
			}
			var s protoreflect.Value
			if s, err = scalarValue(fd, val); err == nil {
				m.Set(fd, s)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func fillList(l protoreflect.List, fd protoreflect.FieldDescriptor, v any) error {
	items, ok := v.([]any)
	if !ok {
		return errNeedsProtoJSON
	}
	for _, it := range items {
		if it == nil {
			return errNeedsProtoJSON
		}
		if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			e := l.NewElement()
			if err := fillMessage(e.Message(), it); err != nil {
				return err
			}
			l.Append(e)
			continue
		}
		s, err := scalarValue(fd, it)
		if err != nil {
			return err
		}
		l.Append(s)
	}
	return nil
}

func fillMap(mm protoreflect.Map, fd protoreflect.FieldDescriptor, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return errNeedsProtoJSON
	}
	kd, vd := fd.MapKey(), fd.MapValue()
	for k, val := range obj {
		if val == nil {
			return errNeedsProtoJSON
		}
		key, err := mapKey(kd, k)
		if err != nil {
			return err
		}
		if vd.Kind() == protoreflect.MessageKind || vd.Kind() == protoreflect.GroupKind {
			e := mm.NewValue()
			if err := fillMessage(e.Message(), val); err != nil {
				return err
			}
			mm.Set(key, e)
			continue
		}
		s, err := scalarValue(vd, val)
		if err != nil {
			return err
		}
		mm.Set(key, s)
	}
	return nil
}

// mapKey reads a map key written in its canonical form.
func mapKey(kd protoreflect.FieldDescriptor, k string) (protoreflect.MapKey, error) {
	switch kd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(k).MapKey(), nil
	case protoreflect.BoolKind:
		switch k {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
		return protoreflect.MapKey{}, errNeedsProtoJSON
	}
	v, err := intValue(kd.Kind(), k)
	if err != nil {
		return protoreflect.MapKey{}, err
	}
	return v.MapKey(), nil
}

// scalarValue reads a singular non-message value: a JSON string for
// strings and enum names, a JSON number for numbers and enum numbers, a
// boolean for booleans.
func scalarValue(fd protoreflect.FieldDescriptor, v any) (protoreflect.Value, error) {
	switch kind := fd.Kind(); kind {
	case protoreflect.StringKind:
		if s, ok := v.(string); ok {
			return protoreflect.ValueOfString(s), nil
		}
	case protoreflect.BoolKind:
		if b, ok := v.(bool); ok {
			return protoreflect.ValueOfBool(b), nil
		}
	case protoreflect.EnumKind:
		switch x := v.(type) {
		case string:
			if ev := fd.Enum().Values().ByName(protoreflect.Name(x)); ev != nil {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
		case json.Number:
			if n, err := strconv.ParseInt(string(x), 10, 32); err == nil && strconv.FormatInt(n, 10) == string(x) {
				return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
			}
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if n, ok := v.(json.Number); ok {
			bits := 64
			if kind == protoreflect.FloatKind {
				bits = 32
			}
			if f, err := strconv.ParseFloat(string(n), bits); err == nil {
				if bits == 32 {
					return protoreflect.ValueOfFloat32(float32(f)), nil
				}
				return protoreflect.ValueOfFloat64(f), nil
			}
		}
	case protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
	default:
		if n, ok := v.(json.Number); ok {
			return intValue(kind, string(n))
		}
	}
	return protoreflect.Value{}, errNeedsProtoJSON
}

// intValue reads an integer written in canonical decimal.
func intValue(kind protoreflect.Kind, s string) (protoreflect.Value, error) {
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if n, err := strconv.ParseInt(s, 10, 32); err == nil && strconv.FormatInt(n, 10) == s {
			return protoreflect.ValueOfInt32(int32(n)), nil
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
			return protoreflect.ValueOfInt64(n), nil
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if n, err := strconv.ParseUint(s, 10, 32); err == nil && strconv.FormatUint(n, 10) == s {
			return protoreflect.ValueOfUint32(uint32(n)), nil
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && strconv.FormatUint(n, 10) == s {
			return protoreflect.ValueOfUint64(n), nil
		}
	}
	return protoreflect.Value{}, errNeedsProtoJSON
}

// fillWellKnown decodes a google.protobuf message with protojson, from
// its own JSON text: the well-known types have JSON forms of their own.
func fillWellKnown(m protoreflect.Message, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errNeedsProtoJSON
	}
	if err := protojson.Unmarshal(b, m.Interface()); err != nil {
		return errNeedsProtoJSON
	}
	return nil
}

// decodeFast decodes spec into msg with fillMessage, leaving msg reset
// when fillMessage cannot, for protojson to decode and report.
func decodeFast(spec any, msg proto.Message) bool {
	if err := fillMessage(msg.ProtoReflect(), spec); err != nil {
		proto.Reset(msg)
		return false
	}
	return true
}

package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Config resources are marshalled once per snapshot, not once per response.
// The reconciler compiles one *cachev3.Snapshot per proxy class and assigns
// that pointer to every node of the class, so an encodedSnapshot, keyed by
// the pointer, is shared by the whole class: each resource is marshalled
// into its google.protobuf.Any once, and the body of a response (the
// repeated resources field, already in wire form) is built once per set of
// names and handed to every stream that asks for that set. Responses carry
// the body as the message's unknown fields, which protobuf writes verbatim
// after the known ones: a receiver decodes the same message as if Resources
// had been set. sharedCodec then sends the body without copying it.

// Field numbers of the repeated resources fields and of Resource (delta).
const (
	fieldSotwResources  = 2 // DiscoveryResponse.resources
	fieldDeltaResources = 2 // DeltaDiscoveryResponse.resources
	fieldResVersion     = 1 // Resource.version
	fieldResResource    = 2 // Resource.resource
	fieldResName        = 3 // Resource.name
	fieldAnyTypeURL     = 1 // google.protobuf.Any.type_url
	fieldAnyValue       = 2 // google.protobuf.Any.value
)

// bodiesPerType bounds the response bodies an encodedType keeps (one per
// distinct set of names asked for); past it they are dropped and rebuilt.
const bodiesPerType = 16

// encodedSnapshot is one snapshot's resources in wire form, built lazily per
// type and shared by every node assigned the snapshot.
type encodedSnapshot struct {
	snap *cachev3.Snapshot
	refs int           // nodes assigned it; configCache.mu guards it
	reg  *typeRegistry // names its types (deltarecord.go); nil: unnamed

	mu    sync.Mutex // protects types
	types map[string]*encodedType
}

func newEncodedSnapshot(snap *cachev3.Snapshot, reg *typeRegistry) *encodedSnapshot {
	return &encodedSnapshot{snap: snap, reg: reg, types: map[string]*encodedType{}}
}

// typ returns the snapshot's resources of typeURL in wire form, encoding
// them on first use. A type the snapshot does not hold is empty, with
// version "".
func (e *encodedSnapshot) typ(typeURL string) (*encodedType, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.types[typeURL]; t != nil {
		return t, nil
	}
	t, err := encodeType(typeURL, e.snap)
	if err != nil {
		return nil, err
	}
	e.reg.add(t)
	e.types[typeURL] = t
	return t, nil
}

// encodedType is one type's resources in wire form.
type encodedType struct {
	id      string // its name in the typeRegistry ("" when none)
	typeURL string
	version string   // the snapshot's version of the type
	names   []string // sorted
	res     map[string]encodedResource

	mu     sync.Mutex // protects bodies, same and diffs
	bodies map[string][]byte
	// same caches sameResources' answers, by the other type.
	same map[*encodedType]bool
	// diffs caches diffTo's answers, by the other type.
	diffs map[*encodedType]typeDiff
}

// encodedResource is one resource: its Any in wire form and its content
// hash (the per-resource version delta xDS tracks, as go-control-plane
// computes it).
type encodedResource struct {
	any     []byte
	version string
}

func encodeType(typeURL string, snap *cachev3.Snapshot) (*encodedType, error) {
	t := &encodedType{typeURL: typeURL, res: map[string]encodedResource{}, bodies: map[string][]byte{}}
	typ := cachev3.GetResponseType(typeURL)
	if typ == types.UnknownType {
		return t, nil
	}
	r := snap.Resources[typ]
	t.version = r.Version
	opts := proto.MarshalOptions{Deterministic: true}
	for name, item := range r.Items {
		value, err := opts.Marshal(item.Resource)
		if err != nil {
			return nil, fmt.Errorf("marshaling %s %s: %w", typeURL, name, err)
		}
		a := protowire.AppendTag(nil, fieldAnyTypeURL, protowire.BytesType)
		a = protowire.AppendString(a, typeURL)
		a = protowire.AppendTag(a, fieldAnyValue, protowire.BytesType)
		a = protowire.AppendBytes(a, value)
		t.res[name] = encodedResource{any: a, version: cachev3.HashResource(value)}
		t.names = append(t.names, name)
	}
	slices.Sort(t.names)
	return t, nil
}

// body kinds: the repeated resources field of a SotW or a delta response.
const (
	bodySotw  = "sotw"
	bodyDelta = "delta"
)

// body returns the wire form of the resources field holding the named
// resources (each must exist), sorted by name, for a SotW or a delta
// response. Bodies are cached by kind and names, so every stream asking
// for the same resources gets the same bytes. Callers must not modify them.
func (t *encodedType) body(kind string, names []string) []byte {
	if len(names) == 0 {
		return nil
	}
	key := bodyKey(kind, names, len(names) == len(t.names))
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.bodies[key]; ok {
		return b
	}
	var b []byte
	for _, name := range names {
		r := t.res[name]
		if kind == bodySotw {
			b = protowire.AppendTag(b, fieldSotwResources, protowire.BytesType)
			b = protowire.AppendBytes(b, r.any)
			continue
		}
		size := protowire.SizeTag(fieldResVersion) + protowire.SizeBytes(len(r.version)) +
			protowire.SizeTag(fieldResResource) + protowire.SizeBytes(len(r.any)) +
			protowire.SizeTag(fieldResName) + protowire.SizeBytes(len(name))
		b = protowire.AppendTag(b, fieldDeltaResources, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, fieldResVersion, protowire.BytesType)
		b = protowire.AppendString(b, r.version)
		b = protowire.AppendTag(b, fieldResResource, protowire.BytesType)
		b = protowire.AppendBytes(b, r.any)
		b = protowire.AppendTag(b, fieldResName, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	if len(t.bodies) >= bodiesPerType {
		clear(t.bodies)
	}
	t.bodies[key] = b
	return b
}

// bodyKey names a body: its kind and its (sorted) names, hashed unless
// they are all of the type's.
func bodyKey(kind string, names []string, all bool) string {
	if all {
		return kind + "\x00*"
	}
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	return kind + "\x00" + hex.EncodeToString(h.Sum(nil))
}

// filter returns the type's names (sorted) that are in requested, or all
// of them when requested is empty.
func (t *encodedType) filter(requested []string) []string {
	if len(requested) == 0 {
		return t.names
	}
	set := make(map[string]struct{}, len(requested))
	for _, n := range requested {
		set[n] = struct{}{}
	}
	out := make([]string, 0, min(len(set), len(t.names)))
	for _, n := range t.names {
		if _, ok := set[n]; ok {
			out = append(out, n)
		}
	}
	if len(out) == len(t.names) {
		return t.names
	}
	return out
}

// sameTypesKept bounds the answers an encodedType keeps in same.
const sameTypesKept = 16

// sameResources reports whether o holds the same resources as t: the same
// names with the same content hashes. Nodes of a class move from one
// snapshot to the next together, so the answer, computed once per pair of
// types, is shared by all their watches.
func (t *encodedType) sameResources(o *encodedType) bool {
	if t == o {
		return true
	}
	if t.typeURL != o.typeURL || len(t.names) != len(o.names) {
		return false
	}
	t.mu.Lock()
	same, ok := t.same[o]
	t.mu.Unlock()
	if ok {
		return same
	}
	same = true
	for i, name := range t.names {
		if o.names[i] != name || o.res[name].version != t.res[name].version {
			same = false
			break
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.same == nil || len(t.same) >= sameTypesKept {
		t.same = map[*encodedType]bool{}
	}
	t.same[o] = same
	return same
}

package compiler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// versionLen is the number of bytes of SHA-256 a version keeps (hex encoded).
const versionLen = 16

// snapshot sorts each type's resources by name, versions each type with a
// content hash, and returns the go-control-plane snapshot and the
// Snapshot.Version: a hash over the listener, route and cluster versions
// (not endpoints, which change with the fleet).
func (r *resources) snapshot() (*cachev3.Snapshot, string, error) {
	groups := []struct {
		typ   types.ResponseType
		label string
		items []types.Resource
	}{
		{types.Listener, "listeners", toResources(r.listeners)},
		{types.Route, "routes", toResources(r.routes)},
		{types.Cluster, "clusters", toResources(r.clusters)},
		{types.Endpoint, "endpoints", toResources(r.endpoints)},
	}
	snap := &cachev3.Snapshot{}
	top := sha256.New()
	for _, g := range groups {
		sortResources(g.items)
		v, err := hashResources(g.items, r.wire)
		if err != nil {
			return nil, "", fmt.Errorf("versioning %s: %w", g.label, err)
		}
		snap.Resources[g.typ] = cachev3.NewResources(v, g.items)
		if g.typ != types.Endpoint {
			writeField(top, g.label)
			writeField(top, v)
		}
	}
	return snap, hex.EncodeToString(top.Sum(nil)[:versionLen]), nil
}

func toResources[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, x := range items {
		out[i] = x
	}
	return out
}

// sortResources sorts items by name, keeping the order of equal names.
func sortResources(items []types.Resource) {
	named := make([]namedResource, len(items))
	for i, it := range items {
		named[i] = namedResource{cachev3.GetResourceName(it), it}
	}
	slices.SortStableFunc(named, func(a, b namedResource) int { return strings.Compare(a.name, b.name) })
	for i, n := range named {
		items[i] = n.r
	}
}

// namedResource is a resource with its name, for sorting.
type namedResource struct {
	name string
	r    types.Resource
}

// hashResources hashes resources (sorted by name) with a deterministic
// protobuf encoding, taken from wire when it holds the resource's.
func hashResources(items []types.Resource, wire map[proto.Message][]byte) (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, it := range items {
		b, ok := wire[it]
		if !ok {
			var err error
			buf, err = opts.MarshalAppend(buf[:0], it)
			if err != nil {
				return "", fmt.Errorf("marshaling %s: %w", cachev3.GetResourceName(it), err)
			}
			b = buf
		}
		writeField(h, cachev3.GetResourceName(it))
		writeBytes(h, b)
	}
	return hex.EncodeToString(h.Sum(nil)[:versionLen]), nil
}

// writeField writes a length-prefixed field, so that field boundaries are
// part of the hash.
func writeField(h hash.Hash, s string) { writeBytes(h, []byte(s)) }

// writeBytes is writeField for bytes.
func writeBytes(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

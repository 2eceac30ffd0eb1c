package xds

import (
	"slices"
	"strconv"
	"sync"
)

// What a wildcard delta stream holds. go-control-plane keeps, per delta
// subscription, the map of resource name to version the stream holds
// (GetNextVersionMap of the last response); the cache reads it back to
// diff the next snapshot against it. Per resource, that map cost every
// wildcard stream an entry per cluster (3,000 at 1,000 services), and a
// diff per stream of every name. For a wildcard subscription the map now
// holds one entry, deltaWildcardKey, naming the encodedType whose every
// resource the stream holds; the diff from that type to the next one is
// computed once and shared by every stream that held it. go-control-plane
// changes the map in one case a wildcard stream reaches: when it
// unsubscribes a name it had subscribed explicitly, the name is set to
// version "" (an override, which the diff honours: the resource is sent
// again, or reported removed). A record of a type the cache has forgotten
// counts as holding nothing (everything is sent again).
//
// Named subscriptions keep per-resource maps: go-control-plane deletes
// unsubscribed names from them, and a name unsubscribed and subscribed
// again between two responses must be sent again, which one entry could
// not tell.

// deltaWildcardKey is the key of a wildcard delta stream's record. A
// resource name cannot contain NUL.
const deltaWildcardKey = "\x00holds"

// recentSnapshots is how many released snapshots keep their types known
// to the registry, so that a stream that held one of them when its node
// moved on still gets a diff rather than everything.
const recentSnapshots = 16

// typeRegistry names encoded types, for the records of wildcard delta
// streams, and finds them by name.
type typeRegistry struct {
	mu    sync.Mutex // protects next and types
	next  uint64
	types map[string]*encodedType
}

func newTypeRegistry() *typeRegistry {
	return &typeRegistry{types: map[string]*encodedType{}}
}

// add names t and registers it. A nil registry leaves t unnamed.
func (r *typeRegistry) add(t *encodedType) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	t.id = strconv.FormatUint(r.next, 10)
	r.types[t.id] = t
}

// remove forgets the types of e.
func (r *typeRegistry) remove(e *encodedSnapshot) {
	e.mu.Lock()
	ids := make([]string, 0, len(e.types))
	for _, t := range e.types {
		ids = append(ids, t.id)
	}
	e.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.types, id)
	}
}

// lookup returns the type named id, or nil.
func (r *typeRegistry) lookup(id string) *encodedType {
	if r == nil || id == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.types[id]
}

// typeDiff is what changed from one type to another: the names whose
// resource is new or different (sorted), and those gone (sorted). Shared:
// callers must not modify it.
type typeDiff struct {
	changed, removed []string
}

// diffTo returns what changed from t to o, computed once per pair and
// remembered in t (the older type: the memo goes with it).
func (t *encodedType) diffTo(o *encodedType) typeDiff {
	if t == o {
		return typeDiff{}
	}
	t.mu.Lock()
	d, ok := t.diffs[o]
	t.mu.Unlock()
	if ok {
		return d
	}
	for _, name := range o.names {
		if r, ok := t.res[name]; !ok || r.version != o.res[name].version {
			d.changed = append(d.changed, name)
		}
	}
	for _, name := range t.names {
		if _, ok := o.res[name]; !ok {
			d.removed = append(d.removed, name)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.diffs == nil || len(t.diffs) >= sameTypesKept {
		t.diffs = map[*encodedType]typeDiff{}
	}
	t.diffs[o] = d
	return d
}

// wildcardDiff returns what a wildcard stream whose returned map is
// returned lacks of t, and false when the map holds no record of a type
// the registry knows (the caller then diffs name by name).
func wildcardDiff(reg *typeRegistry, returned map[string]string, t *encodedType) (changed, removed []string, ok bool) {
	base := reg.lookup(returned[deltaWildcardKey])
	if base == nil || base.typeURL != t.typeURL {
		return nil, nil, false
	}
	d := base.diffTo(t)
	if len(returned) == 1 {
		return d.changed, d.removed, true
	}
	// Overrides go-control-plane wrote over the record.
	changed, removed = slices.Clone(d.changed), slices.Clone(d.removed)
	for name, v := range returned {
		if name == deltaWildcardKey {
			continue
		}
		if r, ok := t.res[name]; ok {
			if v != r.version && !slices.Contains(d.changed, name) {
				changed = append(changed, name)
			}
		} else if !slices.Contains(d.removed, name) {
			removed = append(removed, name)
		}
	}
	slices.Sort(changed)
	slices.Sort(removed)
	return changed, removed, true
}

package xds

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// A SotW response tells go-control-plane which resources it returned
// (GetReturnedResources); go-control-plane keeps that map in the stream's
// subscription until the next response and hands it back to the cache with
// every request (Subscription.ReturnedResources), where the cache uses it
// to answer a request that asks for a resource the stream does not have
// yet (unreturned). go-control-plane itself only stores the map and, when
// a request names resources, deletes the entries it does not name.
//
// A map with an entry per returned resource cost a stream one entry per
// cluster and per endpoint assignment (at 1,000 services, 6,000 entries
// and about 300 KB per stream, most of the controller's live heap with a
// thousand proxies). Since only this cache reads it, the map records the
// returned set in one entry instead: the type's version and the set's
// hash, under a key that survives go-control-plane's clean-up as long as
// the set could still be the one the stream asks for (the set's first
// name; for a wildcard subscription, which is never cleaned up, a key no
// resource can have). Delta responses keep per-resource maps: the delta
// protocol needs each resource's version.

// returnedWildcard is the key of the record of a wildcard subscription. A
// resource name cannot contain NUL.
const returnedWildcard = "\x00wildcard"

// wanted returns the names of the type's resources sub asks for, sorted:
// all of them for a wildcard subscription (sub nil or req naming none
// counts as one), else those it names that exist.
func (t *encodedType) wanted(sub cachev3.Subscription, req *cachev3.Request) []string {
	if sub == nil {
		return t.filter(req.GetResourceNames())
	}
	if sub.IsWildcard() {
		return t.names
	}
	subscribed := sub.SubscribedResources()
	if len(subscribed) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(subscribed), len(t.names)))
	for _, n := range t.names {
		if _, ok := subscribed[n]; ok {
			out = append(out, n)
		}
	}
	if len(out) == len(t.names) {
		return t.names
	}
	return out
}

// returnedRecord is the map a SotW response of names (as wanted returned
// them) gives go-control-plane to keep: one entry recording the set.
func (t *encodedType) returnedRecord(wildcard bool, names []string) map[string]string {
	if len(names) == 0 {
		return map[string]string{}
	}
	key := names[0]
	if wildcard {
		key = returnedWildcard
	}
	return map[string]string{key: t.setValue(names)}
}

// setValue identifies a set of the type's names at the type's version.
func (t *encodedType) setValue(names []string) string {
	return t.version + "\x00" + bodyKey("", names, len(names) == len(t.names))
}

// unreturned reports whether the type holds a resource sub wants that was
// not returned to it yet: whether what it wants differs from the set the
// stream's last response recorded (a set that shrank also counts; the
// response that follows is then a harmless repeat).
func (t *encodedType) unreturned(sub cachev3.Subscription) bool {
	names := t.wanted(sub, nil)
	if len(names) == 0 {
		return false
	}
	key := names[0]
	if sub.IsWildcard() {
		key = returnedWildcard
	}
	v, ok := sub.ReturnedResources()[key]
	return !ok || v != t.setValue(names)
}

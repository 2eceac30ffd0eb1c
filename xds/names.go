package xds

import (
	"hash/maphash"
	"slices"
	"sync"
)

// Requests name their resources again and again: an Envoy-style client
// subscribes to the endpoints of every cluster by name and repeats the
// whole list with every ACK, and every proxy of a class asks for the same
// list. go-control-plane keeps the last list of each stream's
// subscriptions, as the keys of a map, so at 1,000 services every stream
// held its own copy of 3,000 cluster names (about 250 KB). nameLists gives
// equal lists one shared copy: the request callbacks replace a request's
// names by the copy before go-control-plane reads them, and the decoded
// ones become garbage at once.

// Bounds of nameLists: lists shorter than minInternedNames are left alone
// (sharing them saves less than looking them up costs), and past
// maxInternedLists distinct lists the table starts again (lists already
// shared stay shared by the streams holding them).
const (
	minInternedNames = 8
	maxInternedLists = 256
)

// nameLists interns lists of resource names.
type nameLists struct {
	seed maphash.Seed

	mu    sync.Mutex // protects lists
	lists map[uint64][]string
}

func newNameLists() *nameLists {
	return &nameLists{seed: maphash.MakeSeed(), lists: map[uint64][]string{}}
}

// intern returns the shared list equal to names (in the same order), or
// names itself, which becomes the shared one. Callers must not modify
// what it returns.
func (l *nameLists) intern(names []string) []string {
	if len(names) < minInternedNames {
		return names
	}
	var h maphash.Hash
	h.SetSeed(l.seed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	sum := h.Sum64()
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.lists[sum]; ok && slices.Equal(prev, names) {
		return prev
	}
	if len(l.lists) >= maxInternedLists {
		clear(l.lists)
	}
	l.lists[sum] = names
	return names
}

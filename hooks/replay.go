package hooks

import (
	"sync"
	"time"
)

// recent remembers the delivery ids seen within a window, at most size of
// them: a ring in arrival order with a map for lookups, so memory stays
// bounded whatever a sender does.
type recent struct {
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex // protects ring, next and seen
	ring []entry
	next int
	seen map[string]time.Time
}

type entry struct {
	id string
	at time.Time
}

func newRecent(size int, window time.Duration, now func() time.Time) *recent {
	if size < 1 {
		size = 1
	}
	return &recent{window: window, now: now, ring: make([]entry, size), seen: make(map[string]time.Time, size)}
}

// seenBefore records id and reports whether it was already recorded within
// the window. The oldest id is forgotten when the ring is full.
func (r *recent) seenBefore(id string) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.seen[id]; ok && now.Sub(at) < r.window {
		return true
	}
	old := r.ring[r.next]
	if old.id != "" && r.seen[old.id].Equal(old.at) {
		delete(r.seen, old.id)
	}
	r.ring[r.next] = entry{id: id, at: now}
	r.next = (r.next + 1) % len(r.ring)
	r.seen[id] = now
	return false
}

package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"
)

// LBKind is a cluster's lb_policy.
type LBKind int

const (
	// The lb_policy values the proxy implements.
	LBRoundRobin LBKind = iota
	LBLeastRequest
	LBRandom
	LBRingHash
	LBMaglev
)

// Envoy's defaults for the hash balancers.
const (
	defaultMinRingSize     = 1024
	DefaultMaxRingSize     = 8 * 1024 * 1024
	defaultMaglevTableSize = 65537
	defaultChoiceCount     = 2
)

// LBConfig is a cluster's load-balancing configuration.
type LBConfig struct {
	Kind LBKind
	// ChoiceCount is least_request's choice_count; MinRing and MaxRing are
	// ring_hash's ring sizes; TableSize is maglev's table_size.
	ChoiceCount int
	MinRing     uint64
	MaxRing     uint64
	TableSize   uint64
	// PanicThreshold is common_lb_config.healthy_panic_threshold in
	// percent; nil is Envoy's default of 50.
	PanicThreshold *float64
}

// key identifies the configuration by value (for resolver reuse).
func (l *LBConfig) key() string {
	if l == nil {
		return ""
	}
	panicAt := -1.0
	if l.PanicThreshold != nil {
		panicAt = *l.PanicThreshold
	}
	return fmt.Sprintf("%d/%d/%d/%d/%d/%g", l.Kind, l.ChoiceCount, l.MinRing, l.MaxRing, l.TableSize, panicAt)
}

// HashBased reports whether the policy consults the route's hash_policy.
func (l *LBConfig) HashBased() bool {
	return l != nil && (l.Kind == LBRingHash || l.Kind == LBMaglev)
}

// DefaultLB is a round-robin lbConfig with Envoy's default settings.
func DefaultLB() *LBConfig {
	return &LBConfig{Kind: LBRoundRobin, ChoiceCount: defaultChoiceCount, MinRing: defaultMinRingSize, MaxRing: DefaultMaxRingSize, TableSize: defaultMaglevTableSize}
}

// buildLB precomputes the structures of the set's policy.
func (s *EndpointSet) buildLB(weights []uint32) {
	s.cumulative = make([]uint64, len(weights))
	s.equalWeight = true
	var sum uint64
	for i, w := range weights {
		sum += uint64(w)
		s.cumulative[i] = sum
		if w != weights[0] {
			s.equalWeight = false
		}
	}
	switch s.lb.Kind {
	case LBRingHash:
		s.ring = buildRing(s.Endpoints, weights, s.lb.MinRing, s.lb.MaxRing)
	case LBMaglev:
		s.table = buildMaglev(s.Endpoints, weights, s.lb.TableSize)
	}
}

// randomIndex is a weighted random endpoint index.
func (s *EndpointSet) randomIndex() int {
	if s.equalWeight {
		return rand.IntN(len(s.Endpoints))
	}
	n := rand.Uint64N(s.cumulative[len(s.cumulative)-1])
	return sort.Search(len(s.cumulative), func(i int) bool { return s.cumulative[i] > n })
}

func (s *EndpointSet) pickRandom(f *hostFilter) *Endpoint {
	for range 2 * len(s.Endpoints) {
		if e := s.Endpoints[s.randomIndex()]; !f.active() || f.usable(e, s.ClusterState) {
			return e
		}
	}
	return s.firstUsable(rand.IntN(len(s.Endpoints)), f)
}

// pickLeastRequest samples choice_count hosts and takes the one with the
// fewest active requests per unit of weight (Envoy's power of two choices).
func (s *EndpointSet) pickLeastRequest(f *hostFilter) *Endpoint {
	var best *Endpoint
	for range s.lb.ChoiceCount {
		var e *Endpoint
		for range 2 * len(s.Endpoints) {
			if c := s.Endpoints[s.randomIndex()]; !f.active() || f.usable(c, s.ClusterState) {
				e = c
				break
			}
		}
		if e == nil {
			continue
		}
		if best == nil || e.State.Active.Load()*int64(best.weight) < best.State.Active.Load()*int64(e.weight) {
			best = e
		}
	}
	if best == nil {
		return s.firstUsable(rand.IntN(len(s.Endpoints)), f)
	}
	return best
}

func (s *EndpointSet) firstUsable(start int, f *hostFilter) *Endpoint {
	for i := range s.Endpoints {
		if e := s.Endpoints[(start+i)%len(s.Endpoints)]; f.usable(e, s.ClusterState) {
			return e
		}
	}
	return nil
}

// ringEntry is one point of a RING_HASH ring.
type ringEntry struct {
	hash uint64
	host uint32
}

// buildRing places each host on the ring a number of times proportional to
// its weight, scaled as Envoy scales it (the lightest host gets at least
// one point when the ring may grow to fit it).
func buildRing(eps []*Endpoint, weights []uint32, minSize, maxSize uint64) []ringEntry {
	var sum float64
	for _, w := range weights {
		sum += float64(w)
	}
	minNorm := math.MaxFloat64
	for _, w := range weights {
		minNorm = min(minNorm, float64(w)/sum)
	}
	scale := min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	var ring []ringEntry
	for i, e := range eps {
		n := int(math.Ceil(float64(weights[i]) / sum * scale))
		for j := range n {
			ring = append(ring, ringEntry{hash: HashString(e.Addr + "_" + strconv.Itoa(j)), host: uint32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.host) - int(b.host)
	})
	return ring
}

// buildMaglev fills a Maglev lookup table as Envoy does (weighted
// permutation filling).
func buildMaglev(eps []*Endpoint, weights []uint32, size uint64) []uint32 {
	const empty = math.MaxUint32
	table := make([]uint32, size)
	for i := range table {
		table[i] = empty
	}
	type entry struct {
		offset, skip, next uint64
		target             float64
	}
	entries := make([]entry, len(eps))
	maxW := 0.0
	for i, e := range eps {
		entries[i] = entry{offset: HashString(e.Addr) % size, skip: HashString(e.Addr+"#skip")%(size-1) + 1}
		maxW = max(maxW, float64(weights[i]))
	}
	filled := uint64(0)
	for iter := 1.0; filled < size; iter++ {
		for i := range entries {
			if filled >= size {
				break
			}
			en := &entries[i]
			if iter*float64(weights[i]) < en.target {
				continue
			}
			en.target += maxW
			c := (en.offset + en.skip*en.next) % size
			for table[c] != empty {
				en.next++
				c = (en.offset + en.skip*en.next) % size
			}
			table[c] = uint32(i)
			en.next++
			filled++
		}
	}
	return table
}

// pickHash maps the request's hash to a host; without a hash (no hash
// policy produced one) it uses a random one, as Envoy. An unusable host
// passes the key on to the next point of the ring or table, so keys of
// usable hosts never move.
func (s *EndpointSet) pickHash(pr *PickRequest, f *hostFilter) *Endpoint {
	h := rand.Uint64()
	if pr != nil && pr.HasHash {
		h = pr.Hash
	}
	if len(s.ring) > 0 {
		i := sort.Search(len(s.ring), func(i int) bool { return s.ring[i].hash >= h })
		for k := range len(s.ring) {
			e := s.Endpoints[s.ring[(i+k)%len(s.ring)].host]
			if !f.active() || f.usable(e, s.ClusterState) {
				return e
			}
		}
		return nil
	}
	if len(s.table) > 0 {
		i := h % uint64(len(s.table))
		for k := range uint64(len(s.table)) {
			e := s.Endpoints[s.table[(i+k)%uint64(len(s.table))]]
			if !f.active() || f.usable(e, s.ClusterState) {
				return e
			}
		}
	}
	return nil
}

// HashString is FNV-1a finished with a 64-bit mixer: stable across
// processes, so every proxy maps a key to the same host.
func HashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// HashPolicyKind is the source of a route hash_policy.
type HashPolicyKind int

const (
	// The hash_policy sources: header, cookie, connection_properties
	// (source_ip) and query_parameter.
	HashHeader HashPolicyKind = iota
	HashCookie
	HashSourceIP
	HashQuery
	// HashNone never yields a value (connection_properties with
	// source_ip false).
	HashNone
)

// HashPolicy is a built RouteAction.HashPolicy.
type HashPolicy struct {
	Kind HashPolicyKind
	Name string // header (canonical or pseudo), cookie or query parameter
	// TTL, with Path, is a cookie policy's: the proxy sets the cookie when
	// the request has none and TTL is set.
	TTL  *time.Duration
	Path string
	// Terminal stops at this policy when it yields a hash.
	Terminal bool
}

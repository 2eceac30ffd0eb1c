package proxy

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// lbKind is a cluster's lb_policy.
type lbKind int

const (
	lbRoundRobin lbKind = iota
	lbLeastRequest
	lbRandom
	lbRingHash
	lbMaglev
)

// Envoy's defaults for the hash balancers.
const (
	defaultMinRingSize     = 1024
	defaultMaxRingSize     = 8 * 1024 * 1024
	defaultMaglevTableSize = 65537
	defaultChoiceCount     = 2
)

// lbConfig is a cluster's load-balancing configuration.
type lbConfig struct {
	kind        lbKind
	choiceCount int
	minRing     uint64
	maxRing     uint64
	tableSize   uint64
	// panicThreshold is common_lb_config.healthy_panic_threshold in
	// percent; nil is Envoy's default of 50.
	panicThreshold *float64
}

// key identifies the configuration by value (for resolver reuse).
func (l *lbConfig) key() string {
	if l == nil {
		return ""
	}
	panicAt := -1.0
	if l.panicThreshold != nil {
		panicAt = *l.panicThreshold
	}
	return fmt.Sprintf("%d/%d/%d/%d/%d/%g", l.kind, l.choiceCount, l.minRing, l.maxRing, l.tableSize, panicAt)
}

// hashBased reports whether the policy consults the route's hash_policy.
func (l *lbConfig) hashBased() bool {
	return l != nil && (l.kind == lbRingHash || l.kind == lbMaglev)
}

// defaultLB is a round-robin lbConfig with Envoy's default settings.
func defaultLB() *lbConfig {
	return &lbConfig{kind: lbRoundRobin, choiceCount: defaultChoiceCount, minRing: defaultMinRingSize, maxRing: defaultMaxRingSize, tableSize: defaultMaglevTableSize}
}

// buildLB reads lb_policy and its *_lb_config and common_lb_config.
func buildLB(c *clusterv3.Cluster) (*lbConfig, *fieldError) {
	l := defaultLB()
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		l.kind = lbRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		l.kind = lbLeastRequest
	case clusterv3.Cluster_RANDOM:
		l.kind = lbRandom
	case clusterv3.Cluster_RING_HASH:
		l.kind = lbRingHash
	case clusterv3.Cluster_MAGLEV:
		l.kind = lbMaglev
	default:
		return nil, fieldErr("lb_policy", "%s: %w", c.GetLbPolicy(), errUnsupported)
	}
	// Envoy reads only the lb_config of the cluster's lb_policy and ignores
	// one set for another policy; so does the proxy.
	switch cfg := c.GetLbConfig().(type) {
	case nil:
	case *clusterv3.Cluster_LeastRequestLbConfig_:
		if l.kind != lbLeastRequest {
			break // Envoy ignores the config of another policy
		}
		if err := checkFields(cfg.LeastRequestLbConfig, "choice_count"); err != nil {
			return nil, fieldErr("least_request_lb_config", "%w", err)
		}
		if n := cfg.LeastRequestLbConfig.GetChoiceCount(); n != nil {
			if n.GetValue() < 2 {
				return nil, fieldErr("least_request_lb_config.choice_count", "%d: must be at least 2", n.GetValue())
			}
			l.choiceCount = int(n.GetValue())
		}
	case *clusterv3.Cluster_RingHashLbConfig_:
		if l.kind != lbRingHash {
			break // Envoy ignores the config of another policy
		}
		rc := cfg.RingHashLbConfig
		if err := checkFields(rc, "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
			return nil, fieldErr("ring_hash_lb_config", "%w", err)
		}
		if v := rc.GetMinimumRingSize(); v != nil {
			l.minRing = v.GetValue()
		}
		if v := rc.GetMaximumRingSize(); v != nil {
			l.maxRing = v.GetValue()
		}
		if l.minRing == 0 || l.minRing > l.maxRing || l.maxRing > defaultMaxRingSize {
			return nil, fieldErr("ring_hash_lb_config", "ring sizes %d-%d: need 1 <= minimum <= maximum <= %d", l.minRing, l.maxRing, defaultMaxRingSize)
		}
	case *clusterv3.Cluster_MaglevLbConfig_:
		if l.kind != lbMaglev {
			break // Envoy ignores the config of another policy
		}
		if err := checkFields(cfg.MaglevLbConfig, "table_size"); err != nil {
			return nil, fieldErr("maglev_lb_config", "%w", err)
		}
		if v := cfg.MaglevLbConfig.GetTableSize(); v != nil {
			if !isPrime(v.GetValue()) || v.GetValue() > 5000011 {
				return nil, fieldErr("maglev_lb_config.table_size", "%d: must be a prime up to 5000011", v.GetValue())
			}
			l.tableSize = v.GetValue()
		}
	case *clusterv3.Cluster_OriginalDstLbConfig_:
		// Only read by ORIGINAL_DST clusters (buildCluster).
	default:
		return nil, fieldErr("lb_config", "%T: %w", cfg, errUnsupported)
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		// locality_weighted_lb_config is accepted: the proxy flattens
		// localities, and gitmesh emits a single one.
		if err := checkFields(cl, "healthy_panic_threshold", "locality_weighted_lb_config"); err != nil {
			return nil, fieldErr("common_lb_config", "%w", err)
		}
		if p := cl.GetHealthyPanicThreshold(); p != nil {
			v := p.GetValue()
			if v < 0 || v > 100 {
				return nil, fieldErr("common_lb_config.healthy_panic_threshold", "%g: must be 0-100", v)
			}
			l.panicThreshold = &v
		}
	}
	return l, nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// buildLB precomputes the structures of the set's policy.
func (s *endpointSet) buildLB(weights []uint32) {
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
	switch s.lb.kind {
	case lbRingHash:
		s.ring = buildRing(s.endpoints, weights, s.lb.minRing, s.lb.maxRing)
	case lbMaglev:
		s.table = buildMaglev(s.endpoints, weights, s.lb.tableSize)
	}
}

// randomIndex is a weighted random endpoint index.
func (s *endpointSet) randomIndex() int {
	if s.equalWeight {
		return rand.IntN(len(s.endpoints))
	}
	n := rand.Uint64N(s.cumulative[len(s.cumulative)-1])
	return sort.Search(len(s.cumulative), func(i int) bool { return s.cumulative[i] > n })
}

func (s *endpointSet) pickRandom(f *hostFilter) *endpoint {
	for range 2 * len(s.endpoints) {
		if e := s.endpoints[s.randomIndex()]; !f.active() || f.usable(e, s.cs) {
			return e
		}
	}
	return s.firstUsable(rand.IntN(len(s.endpoints)), f)
}

// pickLeastRequest samples choice_count hosts and takes the one with the
// fewest active requests per unit of weight (Envoy's power of two choices).
func (s *endpointSet) pickLeastRequest(f *hostFilter) *endpoint {
	var best *endpoint
	for range s.lb.choiceCount {
		var e *endpoint
		for range 2 * len(s.endpoints) {
			if c := s.endpoints[s.randomIndex()]; !f.active() || f.usable(c, s.cs) {
				e = c
				break
			}
		}
		if e == nil {
			continue
		}
		if best == nil || e.state.active.Load()*int64(best.weight) < best.state.active.Load()*int64(e.weight) {
			best = e
		}
	}
	if best == nil {
		return s.firstUsable(rand.IntN(len(s.endpoints)), f)
	}
	return best
}

func (s *endpointSet) firstUsable(start int, f *hostFilter) *endpoint {
	for i := range s.endpoints {
		if e := s.endpoints[(start+i)%len(s.endpoints)]; f.usable(e, s.cs) {
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
func buildRing(eps []*endpoint, weights []uint32, minSize, maxSize uint64) []ringEntry {
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
			ring = append(ring, ringEntry{hash: hashString(e.addr + "_" + strconv.Itoa(j)), host: uint32(i)})
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
func buildMaglev(eps []*endpoint, weights []uint32, size uint64) []uint32 {
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
		entries[i] = entry{offset: hashString(e.addr) % size, skip: hashString(e.addr+"#skip")%(size-1) + 1}
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
func (s *endpointSet) pickHash(pr *pickRequest, f *hostFilter) *endpoint {
	h := rand.Uint64()
	if pr != nil && pr.hasHash {
		h = pr.hash
	}
	if len(s.ring) > 0 {
		i := sort.Search(len(s.ring), func(i int) bool { return s.ring[i].hash >= h })
		for k := range len(s.ring) {
			e := s.endpoints[s.ring[(i+k)%len(s.ring)].host]
			if !f.active() || f.usable(e, s.cs) {
				return e
			}
		}
		return nil
	}
	if len(s.table) > 0 {
		i := h % uint64(len(s.table))
		for k := range uint64(len(s.table)) {
			e := s.endpoints[s.table[(i+k)%uint64(len(s.table))]]
			if !f.active() || f.usable(e, s.cs) {
				return e
			}
		}
	}
	return nil
}

// hashString is FNV-1a finished with a 64-bit mixer: stable across
// processes, so every proxy maps a key to the same host.
func hashString(s string) uint64 {
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

// hashPolicyKind is the source of a route hash_policy.
type hashPolicyKind int

const (
	hashHeader hashPolicyKind = iota
	hashCookie
	hashSourceIP
	hashQuery
	// hashNone never yields a value (connection_properties with
	// source_ip false).
	hashNone
)

// hashPolicy is a built RouteAction.HashPolicy.
type hashPolicy struct {
	kind     hashPolicyKind
	name     string // header (canonical or pseudo), cookie or query parameter
	ttl      *time.Duration
	path     string
	terminal bool
}

func buildHashPolicy(hp *routev3.RouteAction_HashPolicy) (hashPolicy, *fieldError) {
	p := hashPolicy{terminal: hp.GetTerminal()}
	switch s := hp.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		if err := checkFields(s.Header, "header_name"); err != nil {
			return p, fieldErr(".header", "%w", err)
		}
		name := s.Header.GetHeaderName()
		if name == "" {
			return p, fieldErr(".header.header_name", "empty")
		}
		if !strings.HasPrefix(name, ":") {
			name = http.CanonicalHeaderKey(name)
		}
		p.kind, p.name = hashHeader, name
	case *routev3.RouteAction_HashPolicy_Cookie_:
		if err := checkFields(s.Cookie, "name", "ttl", "path"); err != nil {
			return p, fieldErr(".cookie", "%w", err)
		}
		if s.Cookie.GetName() == "" {
			return p, fieldErr(".cookie.name", "empty")
		}
		p.kind, p.name, p.path = hashCookie, s.Cookie.GetName(), s.Cookie.GetPath()
		if t := s.Cookie.GetTtl(); t != nil {
			d := t.AsDuration()
			p.ttl = &d
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !s.ConnectionProperties.GetSourceIp() {
			// Envoy builds no hash method for it: the policy never
			// yields a hash.
			p.kind = hashNone
			break
		}
		p.kind = hashSourceIP
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		if s.QueryParameter.GetName() == "" {
			return p, fieldErr(".query_parameter.name", "empty")
		}
		p.kind, p.name = hashQuery, s.QueryParameter.GetName()
	default:
		return p, fieldErr(".policy_specifier", "%T: %w", s, errUnsupported)
	}
	return p, nil
}

// requestHash evaluates a route's hash policies as Envoy does: each
// policy that yields a value is folded in (rotate left, xor); a terminal
// one that yields a value ends the evaluation. A cookie policy with a ttl
// generates the cookie when the request lacks it (rs.setCookie).
func requestHash(policies []hashPolicy, r *http.Request, rs *requestState) (uint64, bool) {
	var h uint64
	found := false
	for i := range policies {
		p := &policies[i]
		var v string
		ok := false
		switch p.kind {
		case hashHeader:
			v, ok = headerValue(r, p.name)
		case hashCookie:
			if c, err := r.Cookie(p.name); err == nil {
				v, ok = c.Value, true
			} else if p.ttl != nil {
				v, ok = generatedCookie(r), true
				rs.setCookie = setCookieValue(p, v)
			}
		case hashSourceIP:
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			v, ok = host, err == nil
		case hashQuery:
			v, ok = queryValue(r.URL.RawQuery, p.name)
		}
		if !ok {
			continue
		}
		k := hashString(v)
		if found {
			h = (h<<1 | h>>63) ^ k
		} else {
			h, found = k, true
		}
		if p.terminal {
			break
		}
	}
	return h, found
}

// generatedCookie is the value of a cookie the proxy generates for a
// hash policy: a hash of the client's address, as Envoy derives it.
func generatedCookie(r *http.Request) string {
	var b [8]byte
	h := hashString(r.RemoteAddr)
	for i := range b {
		b[i] = byte(h >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// setCookieValue formats the Set-Cookie header of a generated cookie as
// Envoy does.
func setCookieValue(p *hashPolicy, value string) string {
	s := fmt.Sprintf("%s=%q", p.name, value)
	if *p.ttl > 0 {
		s += "; Max-Age=" + strconv.Itoa(int(p.ttl.Seconds()))
	}
	if p.path != "" {
		s += "; Path=" + p.path
	}
	return s + "; HttpOnly"
}

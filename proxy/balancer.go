package proxy

import (
	"google.golang.org/protobuf/types/known/structpb"
	"sync/atomic"
	"time"
)

// maxSchedule caps the length of a weighted round-robin schedule; larger
// weight sums are scaled down proportionally.
const maxSchedule = 4096

// endpoint is one upstream host.
type endpoint struct {
	// addr is host:port, an IP address.
	addr   string
	meta   endpointMeta
	weight uint32
	// tlsMatch is filter_metadata["envoy.transport_socket_match"], which
	// picks the cluster's transport socket for this endpoint; nil for none.
	tlsMatch *structpb.Struct
	// state is the host's live counters (active requests, outlier
	// detection). The applier replaces it with the state the host had in
	// the previous configuration, so counters and ejections survive
	// endpoint updates. Never nil once in an endpointSet.
	state *hostState
}

// endpointMeta is the endpoint's filter_metadata.istio, for metrics labels.
type endpointMeta struct {
	workload  string
	namespace string
	app       string
	version   string
}

// endpointSet is an immutable set of healthy endpoints and the load
// balancer built over them. Round-robin uses a precomputed schedule (smooth
// weighted round-robin, so equal weights give plain round-robin and heavy
// endpoints are interleaved), and picking is one atomic increment; the
// other policies are in lb.go.
type endpointSet struct {
	endpoints []*endpoint
	schedule  []uint32
	next      atomic.Uint64
	// lb is the cluster's policy; nil is round-robin.
	lb *lbConfig
	// cumulative weights for RANDOM and weighted LEAST_REQUEST.
	cumulative  []uint64
	equalWeight bool
	// ring (RING_HASH) and table (MAGLEV) map hashes to endpoints.
	ring  []ringEntry
	table []uint32
	// cs is the cluster's shared state (ejection count); nil in tests.
	cs *clusterState
}

// newEndpointSet builds a round-robin set; weights[i] (> 0) is
// endpoints[i]'s weight.
func newEndpointSet(eps []*endpoint, weights []uint32) *endpointSet {
	return newBalancedSet(eps, weights, nil)
}

// newBalancedSet builds a set balanced by lb (nil: round-robin).
func newBalancedSet(eps []*endpoint, weights []uint32, lb *lbConfig) *endpointSet {
	s := &endpointSet{endpoints: eps, lb: lb}
	for i, e := range eps {
		e.weight = weights[i]
		if e.state == nil {
			e.state = &hostState{}
		}
	}
	if len(eps) == 0 {
		return s
	}
	s.schedule = smoothSchedule(weights)
	if lb != nil {
		s.buildLB(weights)
	}
	return s
}

func smoothSchedule(weights []uint32) []uint32 {
	g := weights[0]
	var sum uint64
	for _, w := range weights {
		g = gcd(g, w)
	}
	w := make([]uint64, len(weights))
	for i := range weights {
		w[i] = uint64(weights[i] / g)
		sum += w[i]
	}
	if sum > maxSchedule {
		scaled := uint64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/sum)
			scaled += w[i]
		}
		sum = scaled
	}
	// Smooth weighted round-robin (as nginx): each step every endpoint gains
	// its weight, the largest current value is picked and loses the sum.
	cur := make([]int64, len(w))
	schedule := make([]uint32, 0, sum)
	for range sum {
		best := 0
		for i := range w {
			cur[i] += int64(w[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(sum)
		schedule = append(schedule, uint32(best))
	}
	return schedule
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pickRequest is what a pick may depend on.
type pickRequest struct {
	// hash is the request's hash-policy key, for RING_HASH and MAGLEV.
	hash    uint64
	hasHash bool
	// avoid are hosts already tried by this request (retries), avoided
	// when another host is available (Envoy's previous_hosts predicate).
	avoid []*endpoint
	// origDst is the original destination of a redirected downstream
	// connection: the endpoint of an ORIGINAL_DST cluster.
	origDst string
}

// pick returns an endpoint, or nil when the set is empty or every host is
// ejected (and the panic threshold does not apply). pr may be nil.
func (s *endpointSet) pick(pr *pickRequest) *endpoint {
	if s == nil || len(s.endpoints) == 0 {
		return nil
	}
	var f hostFilter
	if pr != nil {
		f.avoid = pr.avoid
	}
	if s.cs != nil && s.cs.ejected.Load() > 0 {
		f.now = time.Now().UnixNano()
		f.checkEjection = !s.panicking(f.now)
	}
	if e := s.pickFiltered(pr, &f); e != nil {
		return e
	}
	if len(f.avoid) > 0 {
		// Every other host is unusable: a previous host is better than none.
		f.avoid = nil
		return s.pickFiltered(pr, &f)
	}
	return nil
}

func (s *endpointSet) pickFiltered(pr *pickRequest, f *hostFilter) *endpoint {
	if s.lb != nil {
		switch s.lb.kind {
		case lbRandom:
			return s.pickRandom(f)
		case lbLeastRequest:
			return s.pickLeastRequest(f)
		case lbRingHash, lbMaglev:
			return s.pickHash(pr, f)
		}
	}
	return s.pickRoundRobin(f)
}

func (s *endpointSet) pickRoundRobin(f *hostFilter) *endpoint {
	n := uint64(len(s.schedule))
	if !f.active() {
		i := s.next.Add(1) - 1
		return s.endpoints[s.schedule[i%n]]
	}
	for range n {
		i := s.next.Add(1) - 1
		if e := s.endpoints[s.schedule[i%n]]; f.usable(e, s.cs) {
			return e
		}
	}
	return nil
}

// hostFilter excludes hosts from a pick: ejected ones (unless the cluster
// is in panic) and ones a retry wants to avoid.
type hostFilter struct {
	avoid         []*endpoint
	checkEjection bool
	now           int64
}

func (f *hostFilter) active() bool { return f.checkEjection || len(f.avoid) > 0 }

func (f *hostFilter) usable(e *endpoint, cs *clusterState) bool {
	for _, a := range f.avoid {
		if a == e {
			return false
		}
	}
	return !f.checkEjection || !e.state.ejected(f.now, cs)
}

// panicking reports whether so few hosts are left un-ejected that Envoy's
// healthy_panic_threshold makes the balancer ignore ejections.
func (s *endpointSet) panicking(now int64) bool {
	threshold := 50.0
	if s.lb != nil && s.lb.panicThreshold != nil {
		threshold = *s.lb.panicThreshold
	}
	if threshold <= 0 {
		return false
	}
	healthy := 0
	for _, e := range s.endpoints {
		if !e.state.ejected(now, s.cs) {
			healthy++
		}
	}
	return float64(healthy)*100/float64(len(s.endpoints)) < threshold
}

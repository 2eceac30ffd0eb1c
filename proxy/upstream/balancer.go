package upstream

import (
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"google.golang.org/protobuf/types/known/structpb"
	"sync/atomic"
	"time"
)

// maxSchedule caps the length of a weighted round-robin schedule; larger
// weight sums are scaled down proportionally.
const maxSchedule = 4096

// Endpoint is one upstream host.
type Endpoint struct {
	// Addr is host:port, an IP address.
	Addr string
	// Meta is the endpoint's workload, for metric labels.
	Meta   metrics.EndpointMeta
	weight uint32
	// TLSMatch is filter_metadata["envoy.transport_socket_match"], which
	// picks the cluster's transport socket for this endpoint; nil for none.
	TLSMatch *structpb.Struct
	// State is the host's live counters (active requests, outlier
	// detection). The applier replaces it with the state the host had in
	// the previous configuration, so counters and ejections survive
	// endpoint updates. Never nil once in an endpointSet.
	State *HostState
}

// EndpointSet is an immutable set of healthy endpoints and the load
// balancer built over them. Round-robin uses a precomputed schedule (smooth
// weighted round-robin, so equal weights give plain round-robin and heavy
// endpoints are interleaved), and picking is one atomic increment; the
// other policies are in lb.go.
type EndpointSet struct {
	// Endpoints are the set's hosts, as the ClusterLoadAssignment lists them.
	Endpoints []*Endpoint
	schedule  []uint32
	next      atomic.Uint64
	// lb is the cluster's policy; nil is round-robin.
	lb *LBConfig
	// cumulative weights for RANDOM and weighted LEAST_REQUEST.
	cumulative  []uint64
	equalWeight bool
	// ring (RING_HASH) and table (MAGLEV) map hashes to endpoints.
	ring  []ringEntry
	table []uint32
	// ClusterState is the cluster's shared state (ejection count); nil in tests.
	ClusterState *ClusterState
}

// NewEndpointSet builds a round-robin set; weights[i] (> 0) is
// endpoints[i]'s weight.
func NewEndpointSet(eps []*Endpoint, weights []uint32) *EndpointSet {
	return NewBalancedSet(eps, weights, nil)
}

// NewBalancedSet builds a set balanced by lb (nil: round-robin).
func NewBalancedSet(eps []*Endpoint, weights []uint32, lb *LBConfig) *EndpointSet {
	s := &EndpointSet{Endpoints: eps, lb: lb}
	for i, e := range eps {
		e.weight = weights[i]
		if e.State == nil {
			e.State = &HostState{}
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

// PickRequest is what a pick may depend on.
type PickRequest struct {
	// Hash is the request's hash-policy key, for RING_HASH and MAGLEV.
	Hash uint64
	// HasHash says Hash was computed from a hash policy (else a random pick).
	HasHash bool
	// Avoid are hosts already tried by this request (retries), avoided
	// when another host is available (Envoy's previous_hosts predicate).
	Avoid []*Endpoint
	// OrigDst is the original destination of a redirected downstream
	// connection: the endpoint of an ORIGINAL_DST cluster.
	OrigDst string
}

// Pick returns an endpoint, or nil when the set is empty or every host is
// ejected (and the panic threshold does not apply). pr may be nil.
func (s *EndpointSet) Pick(pr *PickRequest) *Endpoint {
	if s == nil || len(s.Endpoints) == 0 {
		return nil
	}
	var f hostFilter
	if pr != nil {
		f.avoid = pr.Avoid
	}
	if s.ClusterState != nil && s.ClusterState.ejected.Load() > 0 {
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

func (s *EndpointSet) pickFiltered(pr *PickRequest, f *hostFilter) *Endpoint {
	if s.lb != nil {
		switch s.lb.Kind {
		case LBRandom:
			return s.pickRandom(f)
		case LBLeastRequest:
			return s.pickLeastRequest(f)
		case LBRingHash, LBMaglev:
			return s.pickHash(pr, f)
		}
	}
	return s.pickRoundRobin(f)
}

func (s *EndpointSet) pickRoundRobin(f *hostFilter) *Endpoint {
	n := uint64(len(s.schedule))
	if !f.active() {
		i := s.next.Add(1) - 1
		return s.Endpoints[s.schedule[i%n]]
	}
	for range n {
		i := s.next.Add(1) - 1
		if e := s.Endpoints[s.schedule[i%n]]; f.usable(e, s.ClusterState) {
			return e
		}
	}
	return nil
}

// hostFilter excludes hosts from a pick: ejected ones (unless the cluster
// is in panic) and ones a retry wants to avoid.
type hostFilter struct {
	avoid         []*Endpoint
	checkEjection bool
	now           int64
}

func (f *hostFilter) active() bool { return f.checkEjection || len(f.avoid) > 0 }

func (f *hostFilter) usable(e *Endpoint, cs *ClusterState) bool {
	for _, a := range f.avoid {
		if a == e {
			return false
		}
	}
	return !f.checkEjection || !e.State.ejected(f.now, cs)
}

// panicking reports whether so few hosts are left un-ejected that Envoy's
// healthy_panic_threshold makes the balancer ignore ejections.
func (s *EndpointSet) panicking(now int64) bool {
	threshold := 50.0
	if s.lb != nil && s.lb.PanicThreshold != nil {
		threshold = *s.lb.PanicThreshold
	}
	if threshold <= 0 {
		return false
	}
	healthy := 0
	for _, e := range s.Endpoints {
		if !e.State.ejected(now, s.ClusterState) {
			healthy++
		}
	}
	return float64(healthy)*100/float64(len(s.Endpoints)) < threshold
}

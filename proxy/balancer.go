package proxy

import (
	"sync/atomic"
)

// maxSchedule caps the length of a weighted round-robin schedule; larger
// weight sums are scaled down proportionally.
const maxSchedule = 4096

// endpoint is one upstream host.
type endpoint struct {
	// addr is host:port, an IP address.
	addr string
	meta endpointMeta
}

// endpointMeta is the endpoint's filter_metadata.istio, for metrics labels.
type endpointMeta struct {
	workload  string
	namespace string
	app       string
	version   string
}

// endpointSet is an immutable set of healthy endpoints balanced by weighted
// round-robin. The schedule is precomputed (smooth weighted round-robin, so
// equal weights give plain round-robin and heavy endpoints are interleaved),
// and picking is one atomic increment.
type endpointSet struct {
	endpoints []*endpoint
	schedule  []uint32
	next      atomic.Uint64
}

// newEndpointSet builds a set; weights[i] (> 0) is endpoints[i]'s weight.
func newEndpointSet(eps []*endpoint, weights []uint32) *endpointSet {
	s := &endpointSet{endpoints: eps}
	if len(eps) == 0 {
		return s
	}
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
	s.schedule = make([]uint32, 0, sum)
	for range sum {
		best := 0
		for i := range w {
			cur[i] += int64(w[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(sum)
		s.schedule = append(s.schedule, uint32(best))
	}
	return s
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pick returns the next endpoint, or nil when the set is empty.
func (s *endpointSet) pick() *endpoint {
	if s == nil || len(s.schedule) == 0 {
		return nil
	}
	i := s.next.Add(1) - 1
	return s.endpoints[s.schedule[i%uint64(len(s.schedule))]]
}

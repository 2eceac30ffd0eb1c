package upstream

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
)

// BreakerLimits are a cluster's DEFAULT-priority circuit_breakers
// thresholds. Envoy's defaults apply to a cluster without thresholds.
type BreakerLimits struct {
	// MaxConnections, MaxPending, MaxRequests and MaxRetries are
	// max_connections, max_pending_requests, max_requests and max_retries.
	MaxConnections uint32
	MaxPending     uint32
	MaxRequests    uint32
	MaxRetries     uint32
}

// DefaultBreakerLimits are Envoy's default thresholds.
var DefaultBreakerLimits = BreakerLimits{MaxConnections: 1024, MaxPending: 1024, MaxRequests: 1024, MaxRetries: 3}

// unlimited is the threshold from which a limit is not enforced (Istio
// emits math.MaxUint32 for "no limit").
const unlimited = math.MaxInt32

// ClusterState is a cluster's live state, shared by every configuration
// that has a cluster of that name: circuit-breaker counters, the number of
// ejected hosts and the registry of host states. The applier owns the
// map of them; data-plane goroutines only touch the atomics.
type ClusterState struct {
	activeRequests atomic.Int64
	// Pending counts requests waiting for a connection slot.
	Pending        atomic.Int64
	activeRetries  atomic.Int64
	tcpConnections atomic.Int64
	ejected        atomic.Int32

	// mu protects connSlots and hosts.
	mu sync.Mutex
	// connSlots is the HTTP/1 connection semaphore (capacity
	// max_connections); replaced when the limit changes.
	connSlots chan struct{}
	// hosts maps an endpoint address to its state.
	hosts map[string]*HostState
}

// NewClusterState returns the state of a cluster seen the first time.
func NewClusterState() *ClusterState { return &ClusterState{hosts: map[string]*HostState{}} }

// Slots returns the connection semaphore for a limit, nil when unlimited.
func (cs *ClusterState) Slots(limit uint32) chan struct{} {
	if limit >= unlimited {
		return nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.connSlots == nil || cap(cs.connSlots) != int(limit) {
		cs.connSlots = make(chan struct{}, limit)
	}
	return cs.connSlots
}

// Adopt gives each endpoint the state its address had, creating new ones,
// and forgets hosts that are gone unless keep is set (a DNS cluster's set
// changes under a live configuration). It recounts the ejected hosts.
func (cs *ClusterState) Adopt(eps []*Endpoint, keep bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	next := make(map[string]*HostState, len(eps))
	if keep {
		for k, v := range cs.hosts {
			next[k] = v
		}
	}
	for _, e := range eps {
		h, ok := cs.hosts[e.Addr]
		if !ok {
			h = e.State
			if h == nil {
				h = &HostState{}
			}
		}
		e.State = h
		next[e.Addr] = h
	}
	cs.hosts = next
	var n int32
	for _, h := range next {
		if h.ejectedUntil.Load() != 0 {
			n++
		}
	}
	cs.ejected.Store(n)
}

// admission is the result of asking a cluster's circuit breakers for a
// request.
type admission int

const (
	admitted admission = iota
	Overflow           // a threshold is reached: 503 UO
	GaveUp             // the request's context ended while pending
)

// Admit applies max_requests and, for HTTP/1 clusters, max_connections with
// max_pending_requests (a request waits for a connection slot as Envoy
// queues it on its pool). On admitted the caller must call release with the
// returned slot channel.
func (c *Cluster) Admit(ctx context.Context) (chan struct{}, admission) {
	cs := c.State
	if cs == nil {
		return nil, admitted
	}
	if c.Limits.MaxRequests < unlimited && cs.activeRequests.Add(1) > int64(c.Limits.MaxRequests) {
		cs.activeRequests.Add(-1)
		return nil, Overflow
	} else if c.Limits.MaxRequests >= unlimited {
		cs.activeRequests.Add(1)
	}
	slots := c.ConnSlots
	if slots == nil {
		return nil, admitted
	}
	select {
	case slots <- struct{}{}:
		return slots, admitted
	default:
	}
	if cs.Pending.Add(1) > int64(c.Limits.MaxPending) {
		cs.Pending.Add(-1)
		cs.activeRequests.Add(-1)
		return nil, Overflow
	}
	defer cs.Pending.Add(-1)
	select {
	case slots <- struct{}{}:
		return slots, admitted
	case <-ctx.Done():
		cs.activeRequests.Add(-1)
		return nil, GaveUp
	}
}

// Release returns what admit took.
func (c *Cluster) Release(slots chan struct{}) {
	if c.State == nil {
		return
	}
	c.State.activeRequests.Add(-1)
	if slots != nil {
		<-slots
	}
}

// AdmitRetry applies max_retries to one retry.
func (c *Cluster) AdmitRetry() bool {
	if c.State == nil || c.Limits.MaxRetries >= unlimited {
		return true
	}
	if c.State.activeRetries.Add(1) > int64(c.Limits.MaxRetries) {
		c.State.activeRetries.Add(-1)
		return false
	}
	return true
}

// ReleaseRetry ends a retry AdmitRetry admitted.
func (c *Cluster) ReleaseRetry() {
	if c.State != nil && c.Limits.MaxRetries < unlimited {
		c.State.activeRetries.Add(-1)
	}
}

// AdmitConnection applies max_connections to a TCP proxy connection.
func (c *Cluster) AdmitConnection() bool {
	if c.State == nil {
		return true
	}
	if n := c.State.tcpConnections.Add(1); c.Limits.MaxConnections < unlimited && n > int64(c.Limits.MaxConnections) {
		c.State.tcpConnections.Add(-1)
		return false
	}
	return true
}

// ReleaseConnection ends a connection AdmitConnection admitted.
func (c *Cluster) ReleaseConnection() {
	if c.State != nil {
		c.State.tcpConnections.Add(-1)
	}
}

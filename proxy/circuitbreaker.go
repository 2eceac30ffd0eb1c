package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// breakerLimits are a cluster's DEFAULT-priority circuit_breakers
// thresholds. Envoy's defaults apply to a cluster without thresholds.
type breakerLimits struct {
	maxConnections uint32
	maxPending     uint32
	maxRequests    uint32
	maxRetries     uint32
}

var defaultBreakerLimits = breakerLimits{maxConnections: 1024, maxPending: 1024, maxRequests: 1024, maxRetries: 3}

// unlimited is the threshold from which a limit is not enforced (Istio
// emits math.MaxUint32 for "no limit").
const unlimited = math.MaxInt32

func buildBreakers(cb *clusterv3.CircuitBreakers) (breakerLimits, *fieldError) {
	l := defaultBreakerLimits
	if cb == nil {
		return l, nil
	}
	if err := checkFields(cb, "thresholds"); err != nil {
		return l, fieldErr("circuit_breakers", "%w", err)
	}
	for i, t := range cb.GetThresholds() {
		field := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		// track_remaining only adds Envoy stats; HIGH thresholds never apply
		// because routes always use the DEFAULT priority.
		if err := checkFields(t, "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "track_remaining"); err != nil {
			return l, fieldErr(field, "%w", err)
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		set := func(dst *uint32, v interface{ GetValue() uint32 }, isNil bool) {
			if !isNil {
				*dst = v.GetValue()
			}
		}
		set(&l.maxConnections, t.GetMaxConnections(), t.GetMaxConnections() == nil)
		set(&l.maxPending, t.GetMaxPendingRequests(), t.GetMaxPendingRequests() == nil)
		set(&l.maxRequests, t.GetMaxRequests(), t.GetMaxRequests() == nil)
		set(&l.maxRetries, t.GetMaxRetries(), t.GetMaxRetries() == nil)
	}
	return l, nil
}

// clusterState is a cluster's live state, shared by every configuration
// that has a cluster of that name: circuit-breaker counters, the number of
// ejected hosts and the registry of host states. The applier owns the
// map of them; data-plane goroutines only touch the atomics.
type clusterState struct {
	activeRequests atomic.Int64
	pending        atomic.Int64
	activeRetries  atomic.Int64
	tcpConnections atomic.Int64
	ejected        atomic.Int32

	// mu protects connSlots and hosts.
	mu sync.Mutex
	// connSlots is the HTTP/1 connection semaphore (capacity
	// max_connections); replaced when the limit changes.
	connSlots chan struct{}
	// hosts maps an endpoint address to its state.
	hosts map[string]*hostState
}

func newClusterState() *clusterState { return &clusterState{hosts: map[string]*hostState{}} }

// slots returns the connection semaphore for a limit, nil when unlimited.
func (cs *clusterState) slots(limit uint32) chan struct{} {
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

// adopt gives each endpoint the state its address had, creating new ones,
// and forgets hosts that are gone unless keep is set (a DNS cluster's set
// changes under a live configuration). It recounts the ejected hosts.
func (cs *clusterState) adopt(eps []*endpoint, keep bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	next := make(map[string]*hostState, len(eps))
	if keep {
		for k, v := range cs.hosts {
			next[k] = v
		}
	}
	for _, e := range eps {
		h, ok := cs.hosts[e.addr]
		if !ok {
			h = e.state
			if h == nil {
				h = &hostState{}
			}
		}
		e.state = h
		next[e.addr] = h
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
	overflow           // a threshold is reached: 503 UO
	gaveUp             // the request's context ended while pending
)

// admit applies max_requests and, for HTTP/1 clusters, max_connections with
// max_pending_requests (a request waits for a connection slot as Envoy
// queues it on its pool). On admitted the caller must call release with the
// returned slot channel.
func (c *cluster) admit(ctx context.Context) (chan struct{}, admission) {
	cs := c.state
	if cs == nil {
		return nil, admitted
	}
	if c.limits.maxRequests < unlimited && cs.activeRequests.Add(1) > int64(c.limits.maxRequests) {
		cs.activeRequests.Add(-1)
		return nil, overflow
	} else if c.limits.maxRequests >= unlimited {
		cs.activeRequests.Add(1)
	}
	slots := c.connSlots
	if slots == nil {
		return nil, admitted
	}
	select {
	case slots <- struct{}{}:
		return slots, admitted
	default:
	}
	if cs.pending.Add(1) > int64(c.limits.maxPending) {
		cs.pending.Add(-1)
		cs.activeRequests.Add(-1)
		return nil, overflow
	}
	defer cs.pending.Add(-1)
	select {
	case slots <- struct{}{}:
		return slots, admitted
	case <-ctx.Done():
		cs.activeRequests.Add(-1)
		return nil, gaveUp
	}
}

// release returns what admit took.
func (c *cluster) release(slots chan struct{}) {
	if c.state == nil {
		return
	}
	c.state.activeRequests.Add(-1)
	if slots != nil {
		<-slots
	}
}

// admitRetry applies max_retries to one retry.
func (c *cluster) admitRetry() bool {
	if c.state == nil || c.limits.maxRetries >= unlimited {
		return true
	}
	if c.state.activeRetries.Add(1) > int64(c.limits.maxRetries) {
		c.state.activeRetries.Add(-1)
		return false
	}
	return true
}

func (c *cluster) releaseRetry() {
	if c.state != nil && c.limits.maxRetries < unlimited {
		c.state.activeRetries.Add(-1)
	}
}

// admitConnection applies max_connections to a TCP proxy connection.
func (c *cluster) admitConnection() bool {
	if c.state == nil {
		return true
	}
	if n := c.state.tcpConnections.Add(1); c.limits.maxConnections < unlimited && n > int64(c.limits.maxConnections) {
		c.state.tcpConnections.Add(-1)
		return false
	}
	return true
}

func (c *cluster) releaseConnection() {
	if c.state != nil {
		c.state.tcpConnections.Add(-1)
	}
}

// countedConn is an upstream connection that counts the requests sent on
// it, for max_requests_per_connection.
type countedConn struct {
	net.Conn
	uses atomic.Uint32
}

// limitRequestsPerConn marks req so that, when the transport hands it a
// connection that reaches max uses with it, it asks for "Connection: close"
// and the connection is retired after the response (HTTP/1.1).
func limitRequestsPerConn(req *http.Request, max uint32) *http.Request {
	// The header map is shared with the transport's copy of the request and
	// written before the request is (GotConn runs first).
	h := req.Header
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		conn := info.Conn
		if tc, ok := conn.(*tls.Conn); ok {
			conn = tc.NetConn()
		}
		if cc, ok := conn.(*countedConn); ok && cc.uses.Add(1) >= max {
			h.Set("Connection", "close")
		}
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}

package xds

import (
	"context"
	"errors"
	"fmt"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// configCache is the config types' cache (every type but secrets): per
// node, the assigned snapshot and the open watches. It answers watches as
// go-control-plane's SnapshotCache does with ads=false (the rules are in
// CreateWatch and CreateDeltaWatch), but from encodedSnapshots, so a
// snapshot's resources are marshalled once for all the nodes that share it
// rather than once per response (see encoded.go).
type configCache struct {
	// mu protects nodes, snaps and nextID, and is held while answering a
	// watch so that a response and the snapshot it came from agree.
	mu     sync.Mutex
	nodes  map[string]*cacheNode
	snaps  map[*cachev3.Snapshot]*encodedSnapshot
	nextID int64
	// types names the encoded types for wildcard delta records; recent
	// are the last snapshots released, whose types it still knows.
	types  *typeRegistry
	recent []*encodedSnapshot
}

var _ cachev3.Cache = (*configCache)(nil)

// cacheNode is one node's snapshot and open watches.
type cacheNode struct {
	snap   *encodedSnapshot // nil until SetSnapshot
	sotw   map[int64]sotwWatch
	deltas map[int64]deltaWatch
}

type sotwWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	out chan cachev3.Response
}

type deltaWatch struct {
	req *cachev3.DeltaRequest
	sub cachev3.Subscription
	out chan cachev3.DeltaResponse
	// parked is the type the watch found nothing to send in; nil when
	// it was parked before the node had a snapshot.
	parked *encodedType
}

func newConfigCache() *configCache {
	return &configCache{nodes: map[string]*cacheNode{}, snaps: map[*cachev3.Snapshot]*encodedSnapshot{}, types: newTypeRegistry()}
}

// node returns the node's record, creating it. c.mu must be held.
func (c *configCache) node(id string) *cacheNode {
	n := c.nodes[id]
	if n == nil {
		n = &cacheNode{sotw: map[int64]sotwWatch{}, deltas: map[int64]deltaWatch{}}
		c.nodes[id] = n
	}
	return n
}

// SetSnapshot assigns snap to the node and answers its open watches whose
// type changed: a SotW watch whose request's version differs from the
// snapshot's, a delta watch for which a resource changed or went away.
func (c *configCache) SetSnapshot(ctx context.Context, nodeID string, snap *cachev3.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(nodeID)
	if n.snap == nil || n.snap.snap != snap {
		c.release(n.snap)
		n.snap = c.acquire(snap)
	}
	var errs []error
	for id, w := range n.sotw {
		t, err := n.snap.typ(w.req.GetTypeUrl())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t.version == w.req.GetVersionInfo() {
			continue
		}
		if err := send(ctx, w.out, cachev3.Response(newSotwResponse(w.req, w.sub, t))); err != nil {
			return err
		}
		delete(n.sotw, id)
	}
	for id, w := range n.deltas {
		t, err := n.snap.typ(w.req.GetTypeUrl())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if w.parked != nil && w.parked.sameResources(t) {
			// Nothing to send before, the same resources now: skip the
			// per-stream diff, which for a type of thousands of
			// resources cost more than the rest of the assignment.
			w.parked = t
			n.deltas[id] = w
			continue
		}
		resp := newDeltaResponse(w.req, w.sub, t, c.types)
		if resp == nil {
			w.parked = t
			n.deltas[id] = w
			continue
		}
		if err := send(ctx, w.out, cachev3.DeltaResponse(resp)); err != nil {
			return err
		}
		delete(n.deltas, id)
	}
	return errors.Join(errs...)
}

// consistent checks snap.Consistent once per snapshot: a snapshot some
// node holds was checked when it was first assigned, and snapshots are
// not modified once assigned. The check follows every reference in the
// snapshot, so per node it cost as much as the whole class's config.
func (c *configCache) consistent(snap *cachev3.Snapshot) error {
	c.mu.Lock()
	known := snap != nil && c.snaps[snap] != nil
	c.mu.Unlock()
	if known {
		return nil
	}
	return snap.Consistent()
}

// ClearSnapshot forgets the node: its snapshot and its watches.
func (c *configCache) ClearSnapshot(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[nodeID]; n != nil {
		c.release(n.snap)
		delete(c.nodes, nodeID)
	}
}

// acquire returns the encoded form of snap, shared with the other nodes
// assigned it. c.mu must be held.
func (c *configCache) acquire(snap *cachev3.Snapshot) *encodedSnapshot {
	e := c.snaps[snap]
	if e == nil {
		e = newEncodedSnapshot(snap, c.types)
		c.snaps[snap] = e
	}
	e.refs++
	return e
}

// release drops a node's reference to e; the last one forgets it. c.mu
// must be held.
func (c *configCache) release(e *encodedSnapshot) {
	if e == nil {
		return
	}
	if e.refs--; e.refs == 0 {
		delete(c.snaps, e.snap)
		c.recent = append(c.recent, e)
		if len(c.recent) > recentSnapshots {
			c.types.remove(c.recent[0])
			c.recent = c.recent[1:]
		}
	}
}

// CreateWatch answers a SotW request at once when the node's snapshot has
// another version of the type than the request names, or has a resource
// the subscription wants that was not returned on this stream yet (a new
// name, or a new wildcard subscription); otherwise it parks the watch
// until SetSnapshot changes the type.
func (c *configCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	nodeID := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(nodeID)
	if n.snap != nil {
		t, err := n.snap.typ(req.GetTypeUrl())
		if err != nil {
			return nil, fmt.Errorf("answering %s for node %s: %w", req.GetTypeUrl(), nodeID, err)
		}
		if req.GetVersionInfo() != t.version || t.unreturned(sub) {
			if err := send(context.Background(), out, cachev3.Response(newSotwResponse(req, sub, t))); err != nil {
				return nil, err
			}
			return func() {}, nil
		}
	}
	c.nextID++
	id := c.nextID
	n.sotw[id] = sotwWatch{req: req, sub: sub, out: out}
	return func() { c.cancel(nodeID, id, false) }, nil
}

// CreateDeltaWatch answers a delta request at once when a subscribed
// resource changed, appeared or went away since it was last returned on
// the stream, or when it is the stream's first wildcard request of the
// type (Envoy waits for that answer even if empty); otherwise it parks the
// watch until SetSnapshot changes something.
func (c *configCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	nodeID := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(nodeID)
	var parked *encodedType // what the watch waits on a change of
	if n.snap != nil {
		t, err := n.snap.typ(req.GetTypeUrl())
		if err != nil {
			return nil, fmt.Errorf("answering %s for node %s: %w", req.GetTypeUrl(), nodeID, err)
		}
		if resp := newDeltaResponse(req, sub, t, c.types); resp != nil {
			if err := send(context.Background(), out, cachev3.DeltaResponse(resp)); err != nil {
				return nil, err
			}
			return func() {}, nil
		}
		parked = t
	}
	c.nextID++
	id := c.nextID
	n.deltas[id] = deltaWatch{req: req, sub: sub, out: out, parked: parked}
	return func() { c.cancel(nodeID, id, true) }, nil
}

// cancel drops an open watch.
func (c *configCache) cancel(nodeID string, id int64, delta bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[nodeID]; n != nil {
		if delta {
			delete(n.deltas, id)
		} else {
			delete(n.sotw, id)
		}
	}
}

// Fetch answers a REST request (not served by Serve) with the node's
// resources of the type, unless it already has the type's version.
func (c *configCache) Fetch(_ context.Context, req *cachev3.Request) (cachev3.Response, error) {
	nodeID := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[nodeID]
	if n == nil || n.snap == nil {
		return nil, fmt.Errorf("fetching %s: no snapshot for node %s", req.GetTypeUrl(), nodeID)
	}
	t, err := n.snap.typ(req.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("fetching %s for node %s: %w", req.GetTypeUrl(), nodeID, err)
	}
	if req.GetVersionInfo() == t.version {
		return nil, &types.SkipFetchError{}
	}
	return newSotwResponse(req, nil, t), nil
}

// send hands a response to a watch's channel. go-control-plane gives each
// stream room for one response per type and keeps one watch per type, so
// it does not block unless the stream is stuck; then ctx bounds it.
func send[R any](ctx context.Context, out chan R, r R) error {
	select {
	case out <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("answering a watch: %w", context.Cause(ctx))
	}
}

// sotwResponse is a SotW response whose resources are a shared body.
type sotwResponse struct {
	req      *cachev3.Request
	version  string
	body     []byte
	returned map[string]string
}

var _ cachev3.Response = (*sotwResponse)(nil)

// newSotwResponse answers req with the type's resources sub wants (all of
// them for a wildcard subscription), at the type's version. sub is nil for
// a REST fetch: then req's names say what is wanted.
func newSotwResponse(req *cachev3.Request, sub cachev3.Subscription, t *encodedType) *sotwResponse {
	names := t.wanted(sub, req)
	wildcard := sub == nil || sub.IsWildcard()
	return &sotwResponse{req: req, version: t.version, body: t.body(bodySotw, names), returned: t.returnedRecord(wildcard, names)}
}

// GetDiscoveryResponse returns a new response message each call (the
// server sets its nonce), with the shared body as its resources.
func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	out := &discoveryv3.DiscoveryResponse{VersionInfo: r.version, TypeUrl: r.req.GetTypeUrl()}
	if len(r.body) > 0 {
		out.ProtoReflect().SetUnknown(r.body)
	}
	return out, nil
}

// GetRequest returns the request answered.
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }

// GetVersion returns the type's version.
func (r *sotwResponse) GetVersion() (string, error) { return r.version, nil }

// GetResponseVersion returns the type's version.
func (r *sotwResponse) GetResponseVersion() string { return r.version }

// GetReturnedResources records the returned set for unreturned (see
// returned.go), not one entry per resource.
func (r *sotwResponse) GetReturnedResources() map[string]string { return r.returned }

// GetContext returns a background context.
func (r *sotwResponse) GetContext() context.Context { return context.Background() }

// deltaResponse is a delta response whose resources are a shared body.
type deltaResponse struct {
	req     *cachev3.DeltaRequest
	version string
	body    []byte
	removed []string
	next    map[string]string
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

// newDeltaResponse diffs the type's resources against what sub was
// returned, as go-control-plane's snapshot cache does, and returns nil
// when there is nothing to send. The map of what the stream holds next is
// built only for a response: a request that changes nothing (every ACK)
// costs the diff alone.
func newDeltaResponse(req *cachev3.DeltaRequest, sub cachev3.Subscription, t *encodedType, reg *typeRegistry) *deltaResponse {
	returned := sub.ReturnedResources()
	var changed, removed []string
	recorded := false
	if sub.IsWildcard() {
		changed, removed, recorded = wildcardDiff(reg, returned, t)
	}
	if sub.IsWildcard() && !recorded {
		for _, name := range t.names {
			if prev, ok := returned[name]; !ok || prev != t.res[name].version {
				changed = append(changed, name)
			}
		}
		if len(returned) > len(t.names)-len(changed) {
			for name := range returned {
				if _, ok := t.res[name]; !ok && name != deltaWildcardKey {
					removed = append(removed, name)
				}
			}
		}
	} else if !sub.IsWildcard() {
		for name := range sub.SubscribedResources() {
			prev, found := returned[name]
			if r, ok := t.res[name]; ok {
				if prev != r.version {
					changed = append(changed, name)
				}
			} else if found {
				removed = append(removed, name)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 && (!sub.IsWildcard() || req.GetResponseNonce() != "") {
		return nil
	}
	var next map[string]string
	switch {
	case sub.IsWildcard() && t.id != "":
		next = map[string]string{deltaWildcardKey: t.id} // see deltarecord.go
	case sub.IsWildcard():
		next = make(map[string]string, len(t.names))
		for _, name := range t.names {
			next[name] = t.res[name].version
		}
	default:
		subscribed := sub.SubscribedResources()
		next = make(map[string]string, len(subscribed))
		for name := range subscribed {
			if r, ok := t.res[name]; ok {
				next[name] = r.version
			}
		}
		if len(changed) > 0 {
			changed = t.filter(changed) // sorted, so equal sets share a body
		}
	}
	return &deltaResponse{req: req, version: t.version, body: t.body(bodyDelta, changed), removed: removed, next: next}
}

// GetDeltaDiscoveryResponse returns a new response message each call (the
// server sets its nonce), with the shared body as its resources.
func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	out := &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: r.version, TypeUrl: r.req.GetTypeUrl(), RemovedResources: r.removed}
	if len(r.body) > 0 {
		out.ProtoReflect().SetUnknown(r.body)
	}
	return out, nil
}

// GetDeltaRequest returns the request answered.
func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }

// GetSystemVersion returns the type's version.
func (r *deltaResponse) GetSystemVersion() (string, error) { return r.version, nil }

// GetResponseVersion returns the type's version.
func (r *deltaResponse) GetResponseVersion() string { return r.version }

// GetNextVersionMap returns the per-resource versions the stream holds once
// it applied the response.
func (r *deltaResponse) GetNextVersionMap() map[string]string { return r.next }

// GetReturnedResources is GetNextVersionMap.
func (r *deltaResponse) GetReturnedResources() map[string]string { return r.next }

// GetContext returns a background context.
func (r *deltaResponse) GetContext() context.Context { return context.Background() }

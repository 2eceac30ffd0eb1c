package reconciler

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// This file holds the fakes the state machine tests drive a real
// Reconciler with: a Fleet whose proxies the test connects, ACKs and
// NACKs by hand, and a Source that serves commits written to a temporary
// directory and can be made to hang like a Git server that never answers.

// fakeFleet implements Fleet. Proxies connect when the test says so; by
// default a connected proxy ACKs whatever it is assigned at once (as a
// healthy proxy does within milliseconds), and the test can turn that off
// to ACK or NACK by hand.
type fakeFleet struct {
	changed chan struct{}

	// mu protects nodes, autoAck and sets.
	mu      sync.Mutex
	nodes   map[string]*xds.NodeStatus
	autoAck bool
	// sets counts SetSnapshot calls by node id.
	sets map[string]int
}

var _ Fleet = (*fakeFleet)(nil)

func newFakeFleet() *fakeFleet {
	return &fakeFleet{changed: make(chan struct{}, 1), nodes: map[string]*xds.NodeStatus{}, autoAck: true, sets: map[string]int{}}
}

// Nodes returns a copy of every known node, sorted by id, as xds.Server does.
func (f *fakeFleet) Nodes() []xds.NodeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]xds.NodeStatus, 0, len(f.nodes))
	for _, id := range slices.Sorted(maps.Keys(f.nodes)) {
		out = append(out, *f.nodes[id])
	}
	return out
}

// Changed is signalled (coalescing) whenever a node changes.
func (f *fakeFleet) Changed() <-chan struct{} { return f.changed }

// SetSnapshot assigns version to nodeID. As xds.Server does, assigning
// another version clears the node's NACK, and a node not known yet is
// recorded (not connected) with only its id.
func (f *fakeFleet) SetSnapshot(_ context.Context, nodeID, version string, snap *cachev3.Snapshot) error {
	if snap == nil {
		return fmt.Errorf("setting snapshot of %s: nil snapshot", nodeID)
	}
	f.mu.Lock()
	n := f.nodes[nodeID]
	if n == nil {
		n = &xds.NodeStatus{Workload: nodemeta.Workload{ID: nodeID}}
		f.nodes[nodeID] = n
	}
	if n.Assigned != version {
		n.NACK = nil
	}
	n.Assigned = version
	f.sets[nodeID]++
	if f.autoAck && n.Connected {
		n.Acked = version
	}
	refreshState(n)
	f.mu.Unlock()
	f.signal()
	return nil
}

func (f *fakeFleet) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// refreshState computes n.State as xds.Server documents it.
func refreshState(n *xds.NodeStatus) {
	switch {
	case n.NACK != nil:
		n.State = xds.StateNacked
	case n.Assigned != "" && n.Acked == n.Assigned:
		n.State = xds.StateSynced
	default:
		n.State = xds.StateStale
	}
}

// setCounts returns how many snapshots each node was assigned so far.
func (f *fakeFleet) setCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.sets)
}

// connect connects a sidecar of the frontend service with id, whose
// metrics are scraped at admin (none when "").
func (f *fakeFleet) connect(id, admin string) {
	f.mu.Lock()
	n := f.nodes[id]
	if n == nil {
		n = &xds.NodeStatus{}
		f.nodes[id] = n
	}
	n.Workload = nodemeta.Workload{
		ID: id, Service: "frontend", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "frontend"}, Outbound: "127.0.0.1:15001", Admin: admin,
	}
	n.Connected, n.ConnectedAt, n.LastSeen = true, time.Now(), time.Now()
	refreshState(n)
	f.mu.Unlock()
	f.signal()
}

// setAutoAck turns ACKing on assignment on or off.
func (f *fakeFleet) setAutoAck(on bool) {
	f.mu.Lock()
	f.autoAck = on
	f.mu.Unlock()
}

// ackAll makes every connected node ACK what it was assigned.
func (f *fakeFleet) ackAll() {
	f.mu.Lock()
	for _, n := range f.nodes {
		if n.Connected && n.Assigned != "" {
			n.Acked, n.NACK = n.Assigned, nil
			refreshState(n)
		}
	}
	f.mu.Unlock()
	f.signal()
}

// nack makes node id reject the version it was assigned, as a proxy
// whose listener fails to apply does; it keeps running what it ran.
func (f *fakeFleet) nack(id, why string) {
	f.mu.Lock()
	n := f.nodes[id]
	n.NACK = &xds.NACK{Version: n.Assigned, TypeURL: resource.ListenerType, Error: why, At: time.Now()}
	refreshState(n)
	f.mu.Unlock()
	f.signal()
}

// fakeSource implements sources.Source over commits written to a
// directory. It counts Fetch calls, fails the test if two overlap, and
// can be made to hang until its context is done (or it is released), as
// a Git server that accepts the connection and never answers.
type fakeSource struct {
	t   *testing.T
	dir string

	// calls counts Fetch calls; active counts those running.
	calls, active atomic.Int32
	// hung receives (without blocking) each time a Fetch starts hanging.
	hung chan struct{}

	// mu protects head, commits and release.
	mu      sync.Mutex
	head    sources.Artifact
	commits int
	// release, when not nil, makes Fetch hang until it is closed or the
	// fetch's context is done.
	release chan struct{}
}

var _ sources.Source = (*fakeSource)(nil)

func newFakeSource(t *testing.T) *fakeSource {
	return &fakeSource{t: t, dir: t.TempDir(), hung: make(chan struct{}, 1)}
}

// Fetch returns the head commit, or hangs while the source is hung.
func (s *fakeSource) Fetch(ctx context.Context) (*sources.Artifact, error) {
	s.calls.Add(1)
	if n := s.active.Add(1); n > 1 {
		s.t.Errorf("%d Fetch calls at once; want at most one", n)
	}
	defer s.active.Add(-1)
	s.mu.Lock()
	art, release := s.head, s.release
	s.mu.Unlock()
	if release != nil {
		select {
		case s.hung <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, fmt.Errorf("fetching from the fake remote: %w", ctx.Err())
		}
	}
	if art.Revision == "" {
		return nil, fmt.Errorf("fetching from the fake remote: no commit yet")
	}
	return &art, nil
}

// commit writes files (name -> content) as a new commit and makes it the
// head; it returns the commit's revision.
func (s *fakeSource) commit(files map[string]string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	dir := filepath.Join(s.dir, fmt.Sprintf("commit-%d", s.commits))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.head = sources.Artifact{Revision: fmt.Sprintf("main@sha1:%040x", s.commits), Dir: dir}
	return s.head.Revision
}

// hang makes every Fetch from now on hang until resume.
func (s *fakeSource) hang() {
	s.mu.Lock()
	s.release = make(chan struct{})
	s.mu.Unlock()
}

// resume releases hung fetches and makes Fetch answer again.
func (s *fakeSource) resume() {
	s.mu.Lock()
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
	s.mu.Unlock()
}

// policyFiles is a revision of the policy: two services, the reviews
// subsets, a VirtualService sending everything to subset, and a
// RolloutPolicy whose spec is rolloutSpec (YAML indented by two spaces).
func policyFiles(subset, rolloutSpec string) map[string]string {
	return map[string]string{
		"services.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: frontend}
spec:
  hosts: [frontend.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: frontend}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`,
		"reviews.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v4}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: ` + subset + `}
`,
		"rollout.yaml": `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
` + rolloutSpec,
	}
}

// harness runs a real Reconciler over a fakeFleet, a fakeSource and a
// Store in a temporary directory.
type harness struct {
	t        *testing.T
	src      *fakeSource
	fleet    *fakeFleet
	stateDir string
	opts     harnessOpts

	// good is the first revision, adopted at once and served by everyone.
	good string
	// hungAt is when a fetch started hanging (hangSource).
	hungAt time.Time

	r     *Reconciler
	store *Store
	stop  func()
}

// harnessOpts configures a harness.
type harnessOpts struct {
	// rollout is the RolloutPolicy spec of every revision.
	rollout string
	// nodes is how many proxies connect. Default 4.
	nodes int
	// fetchTimeout is the reconciler's FetchTimeout. Default 10s.
	fetchTimeout time.Duration
	// metrics, when set, serves each proxy's admin endpoint (GET
	// /metrics), started on loopback for the proxy's id.
	metrics func(id string) http.Handler
}

// Timings of the harness: the loop ticks fast, and polls the source
// every interval, so "two more fetches" is a few tens of milliseconds.
const (
	testTick     = 5 * time.Millisecond
	testInterval = 10 * time.Millisecond
	// waitLimit bounds every wait of a test: a feature that does not work
	// fails the test rather than hang it.
	waitLimit = 5 * time.Second
)

// newHarness connects the fleet, commits the first revision and starts
// the reconciler, and returns once every proxy runs that revision.
func newHarness(t *testing.T, opts harnessOpts) *harness {
	t.Helper()
	if opts.nodes == 0 {
		opts.nodes = 4
	}
	if opts.fetchTimeout == 0 {
		opts.fetchTimeout = 10 * time.Second
	}
	h := &harness{t: t, src: newFakeSource(t), fleet: newFakeFleet(), stateDir: t.TempDir(), opts: opts}
	for i := range opts.nodes {
		id, admin := fmt.Sprintf("node-%d", i), ""
		if opts.metrics != nil {
			// Closed after the reconciler stops (cleanups run last first).
			srv := httptest.NewServer(opts.metrics(id))
			t.Cleanup(srv.Close)
			admin = srv.Listener.Addr().String()
		}
		h.fleet.connect(id, admin)
	}
	h.good = h.commit("v1")
	h.start()
	t.Cleanup(h.shutdown)
	h.waitFleetOn(h.good)
	return h
}

// commit commits a revision routing reviews to subset and asks the
// reconciler to fetch it.
func (h *harness) commit(subset string) string {
	rev := h.src.commit(policyFiles(subset, h.opts.rollout))
	if h.r != nil {
		h.r.Trigger()
	}
	return rev
}

// start opens the store and runs a new Reconciler on it.
func (h *harness) start() {
	h.t.Helper()
	store, err := OpenStore(h.stateDir, time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	r, err := New(Config{
		Source: h.src, Fleet: h.fleet, Store: store,
		Interval: testInterval, Tick: testTick, FetchTimeout: h.opts.fetchTimeout,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	h.r, h.store = r, store
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			h.t.Errorf("Run did not return within %s of its context's end", waitLimit)
		}
		if err := store.Close(); err != nil {
			h.t.Errorf("closing store: %v", err)
		}
	}
}

// restart stops the reconciler as a killed controller stops, and starts
// a new one on the same state directory, fleet and source.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.stop = nil
	h.start()
}

func (h *harness) shutdown() {
	h.src.resume() // a hung fetch must not hold Run
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// waitStatus polls the status until cond holds, and fails the test after
// waitLimit, naming what it waited for.
func (h *harness) waitStatus(what string, cond func(admin.Status) bool) admin.Status {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		s := h.r.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s still waiting for %s; status: %s", waitLimit, what, describe(s))
		}
		<-tick.C
	}
}

// waitPhase waits until the rollout of revision rev is in phase p.
func (h *harness) waitPhase(rev string, p admin.Phase) admin.Status {
	h.t.Helper()
	return h.waitStatus(fmt.Sprintf("rollout of %s %s", rev, p), func(s admin.Status) bool {
		return s.Rollout != nil && s.Rollout.Revision == rev && s.Rollout.Phase == p
	})
}

// waitFleetOn waits until every connected proxy runs (ACKed) rev.
func (h *harness) waitFleetOn(rev string) admin.Status {
	h.t.Helper()
	return h.waitStatus("every proxy to run "+rev, func(s admin.Status) bool { return fleetOn(s, rev) })
}

func fleetOn(s admin.Status, rev string) bool {
	for _, p := range s.Proxies {
		if p.Connected && (p.Revision != rev || p.State != admin.StateSynced) {
			return false
		}
	}
	return len(s.Proxies) > 0
}

// waitFetches waits until the source has been fetched n more times: time
// enough for the loop to have acted on what it fetched.
func (h *harness) waitFetches(n int32) {
	h.t.Helper()
	want := h.src.calls.Load() + n + 1 // the fetch in flight may predate the wait
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for h.src.calls.Load() < want {
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s the source was fetched %d times; want %d", waitLimit, h.src.calls.Load(), want)
		}
		<-tick.C
	}
}

// do runs an admin operation and returns its answer and latency.
func (h *harness) do(op string) (admin.Response, time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	res, err := h.r.Do(ctx, admin.Request{Op: op})
	if err != nil {
		h.t.Fatalf("%s: %v", op, err)
	}
	return res, time.Since(start)
}

// canary returns the proxy of the first wave of the status's rollout.
func canary(t *testing.T, s admin.Status) string {
	t.Helper()
	if s.Rollout == nil || len(s.Rollout.Waves) == 0 || len(s.Rollout.Waves[0].Nodes) == 0 {
		t.Fatalf("no first wave in %s", describe(s))
	}
	return s.Rollout.Waves[0].Nodes[0]
}

// ready returns the Ready condition's status, reason and message.
func ready(s admin.Status) (string, string, string) {
	c := s.Ready()
	if c == nil {
		return "", "", ""
	}
	return string(c.Status), c.Reason, c.Message
}

// describe renders what a failing wait saw.
func describe(s admin.Status) string {
	var b strings.Builder
	st, reason, msg := ready(s)
	fmt.Fprintf(&b, "Ready=%s %s %q; applied %s; attempted %s", st, reason, msg, s.LastAppliedRevision, s.LastAttemptedRevision)
	if ro := s.Rollout; ro != nil {
		fmt.Fprintf(&b, "; rollout %d of %s %s wave %d (%s) %q", ro.ID, ro.Revision, ro.Phase, ro.Wave+1, ro.Reason, ro.Waiting)
	}
	if s.Hold != nil {
		fmt.Fprintf(&b, "; held at %s", s.Hold.Revision)
	}
	for _, p := range s.Proxies {
		fmt.Fprintf(&b, "; %s %s %s", p.ID, p.Revision, p.State)
	}
	return b.String()
}

package reconciler

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// dirSource serves one revision from a directory.
type dirSource struct{ dir string }

func (s dirSource) Fetch(context.Context) (*sources.Artifact, error) {
	return &sources.Artifact{Revision: "main@sha1:1111111111111111111111111111111111111111", Dir: s.dir}, nil
}

// recordingFleet is one connected sidecar that ACKs whatever it is
// assigned, recording every SetSnapshot.
type recordingFleet struct {
	mu    sync.Mutex // protects node and sets
	node  xds.NodeStatus
	sets  []*cachev3.Snapshot
	never chan struct{}
}

func (f *recordingFleet) Nodes() []xds.NodeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []xds.NodeStatus{f.node}
}

func (f *recordingFleet) Changed() <-chan struct{} { return f.never }

func (f *recordingFleet) SetSnapshot(_ context.Context, _, version string, snap *cachev3.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.node.Assigned, f.node.Acked = version, version
	f.sets = append(f.sets, snap)
	return nil
}

func (f *recordingFleet) snapshots() []*cachev3.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*cachev3.Snapshot(nil), f.sets...)
}

// liveRegistry is a Registry the test publishes to. Changed is
// unbuffered, so a send returns once Run took it, and a second send once
// Run handled the first.
type liveRegistry struct {
	cur     atomic.Pointer[registry.Static]
	changed chan struct{}
}

func (l *liveRegistry) Current() registry.Registry { return l.cur.Load() }
func (l *liveRegistry) Changed() <-chan struct{}   { return l.changed }

// publish makes reg current and waits until Run has handled the change.
func (l *liveRegistry) publish(reg *registry.Static) {
	if reg != nil {
		l.cur.Store(reg)
	}
	l.changed <- struct{}{}
	l.changed <- struct{}{} // taken only after the first was handled
}

const registryPolicy = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: reviews.shop.svc.cluster.local, subset: v2}}]
`

// reviews returns a registry with Service shop/reviews and endpoints.
func reviews(eps ...registry.Endpoint) *registry.Static {
	return registry.NewStatic([]*registry.Service{{
		Hostname: registry.Hostname("reviews", "shop"), Name: "reviews", Namespace: "shop", Source: registry.SourceKubernetes,
		Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: registry.ProtocolHTTP}},
		Selector:  map[string]string{"app": "reviews"},
		Endpoints: eps,
	}}, nil)
}

func reviewsEndpoint(addr, version string, ready bool) registry.Endpoint {
	return registry.Endpoint{Address: addr, Ports: map[string]uint32{"http": 9080}, Ready: ready, Workload: "reviews-" + version + "-" + addr,
		Labels: map[string]string{"app": "reviews", "version": version}}
}

// runWithRegistry runs a Reconciler serving registryPolicy from a
// directory to one recording sidecar, with live as its registry (first
// holding initial), until the test ends.
func runWithRegistry(t *testing.T, initial *registry.Static) (*Reconciler, *recordingFleet, *liveRegistry) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reviews.yaml"), []byte(registryPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	fleet := &recordingFleet{never: make(chan struct{}), node: xds.NodeStatus{Connected: true, Workload: nodemeta.Workload{
		ID: "client-1", Service: "client", Namespace: "shop", Role: nodemeta.RoleSidecar, Outbound: "127.0.0.1:15001",
	}}}
	live := &liveRegistry{changed: make(chan struct{})}
	live.cur.Store(initial)
	r, err := New(Config{Source: dirSource{dir}, Fleet: fleet, Registry: live, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r, fleet, live
}

// waitFor polls cond every 10ms for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
}

func TestRegistryChangeResendsOnlyEndpoints(t *testing.T) {
	_, fleet, live := runWithRegistry(t, reviews(reviewsEndpoint("10.0.0.2", "v2", true)))
	waitFor(t, "the initial revision is assigned", func() bool { return len(fleet.snapshots()) > 0 })
	policyTypes := []resource.Type{resource.ListenerType, resource.RouteType, resource.ClusterType}
	last := func() *cachev3.Snapshot { s := fleet.snapshots(); return s[len(s)-1] }

	tests := []struct {
		name     string
		publish  *registry.Static // nil: signal without a new registry (a resync)
		wantPush bool
		// wantAddrs are the endpoint addresses sent, when wantPush.
		wantAddrs []string
	}{
		{name: "a signal without a change pushes nothing", publish: nil},
		{name: "an equal registry built again pushes nothing", publish: reviews(reviewsEndpoint("10.0.0.2", "v2", true))},
		{name: "a new endpoint re-sends only endpoints", publish: reviews(reviewsEndpoint("10.0.0.2", "v2", true), reviewsEndpoint("10.0.0.3", "v2", true)), wantPush: true,
			wantAddrs: []string{"10.0.0.2", "10.0.0.3"}},
		{name: "an endpoint going unready re-sends only endpoints", publish: reviews(reviewsEndpoint("10.0.0.2", "v2", true), reviewsEndpoint("10.0.0.3", "v2", false)), wantPush: true,
			wantAddrs: []string{"10.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, n := last(), len(fleet.snapshots())
			live.publish(tt.publish)
			sets := fleet.snapshots()
			if !tt.wantPush {
				if len(sets) != n {
					t.Fatalf("SetSnapshot called %d more time(s); want none", len(sets)-n)
				}
				return
			}
			if len(sets) != n+1 {
				t.Fatalf("SetSnapshot called %d more time(s); want 1", len(sets)-n)
			}
			after := sets[n]
			for _, typ := range policyTypes {
				if b, a := before.GetVersion(typ), after.GetVersion(typ); a != b {
					t.Errorf("%s version changed %s -> %s; want unchanged", typ, b, a)
				}
			}
			if b, a := before.GetVersion(resource.EndpointType), after.GetVersion(resource.EndpointType); a == b {
				t.Errorf("endpoint version unchanged (%s); want a new one", a)
			}
			if got := edsAddresses(after); !slices.Equal(got, tt.wantAddrs) {
				t.Errorf("endpoint addresses = %v; want %v", got, tt.wantAddrs)
			}
		})
	}
}

// edsAddresses lists the distinct addresses of the endpoints in s (of
// every cluster: the service and its subsets), sorted.
func edsAddresses(s *cachev3.Snapshot) []string {
	var out []string
	for _, res := range s.GetResources(resource.EndpointType) {
		cla, ok := res.(*endpointv3.ClusterLoadAssignment)
		if !ok {
			continue
		}
		for _, le := range cla.GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				out = append(out, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRegistryServiceArrivalRetriesFailedRevision: a revision whose
// VirtualService names a Service the cluster does not have fails
// validation; once the Service appears it is tried again and served,
// without a new commit.
func TestRegistryServiceArrivalRetriesFailedRevision(t *testing.T) {
	r, fleet, live := runWithRegistry(t, registry.NewStatic(nil, nil))
	waitFor(t, "validation fails (no Service reviews)", func() bool {
		c := r.Status().Ready()
		return c != nil && c.Reason == ReasonValidationFailed
	})
	if n := len(fleet.snapshots()); n != 0 {
		t.Fatalf("%d snapshot(s) assigned for a revision that failed validation", n)
	}
	live.publish(reviews(reviewsEndpoint("10.0.0.2", "v2", true)))
	waitFor(t, "the revision is served once the Service exists", func() bool { return len(fleet.snapshots()) > 0 })
	if c := r.Status().Ready(); c == nil || c.Reason != ReasonSucceeded {
		t.Errorf("Ready = %+v; want Succeeded", c)
	}
}

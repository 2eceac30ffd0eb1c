package proxy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// TestClusterRemovalWaitsForRoutes: the controller removes a cluster and
// moves the route away from it in one snapshot. CDS arrives first (ADS
// make-before-break order) while the applied routes still name the removed
// cluster: that CDS must be ACKed, not NACKed, and the whole update applied
// once RDS follows.
func TestClusterRemovalWaitsForRoutes(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.node, snapshot(t, "2", m.resources(toCluster(prefixMatch("/"), reviewsV1))...))
	m.waitApplied(config.RouteType, "2")

	var res []types.Resource
	for _, r := range m.resources(toCluster(prefixMatch("/"), reviewsV2)) {
		switch r := r.(type) {
		case *clusterv3.Cluster:
			if r.GetName() == reviewsV1 {
				continue
			}
		case *endpointv3.ClusterLoadAssignment:
			if r.GetClusterName() == reviewsV1 {
				continue
			}
		}
		res = append(res, r)
	}
	m.cp.set(t, m.node, snapshot(t, "3", res...))
	m.waitApplied(config.RouteType, "3")
	m.waitApplied(config.ClusterType, "3")
	m.cp.waitACK(t, config.ClusterType, "3")
	m.cp.mu.Lock()
	for _, r := range m.cp.requests {
		if r.GetErrorDetail() != nil {
			t.Errorf("unexpected NACK: %s", r.GetErrorDetail().GetMessage())
		}
	}
	m.cp.mu.Unlock()
	for range 10 {
		if resp, _ := m.get("reviews", "/", nil); backendOf(resp) != "v2" {
			t.Fatalf("backend %q; want v2", backendOf(resp))
		}
	}
	if _, ok := m.proxy.current.Load().Clusters[reviewsV1]; ok {
		t.Errorf("removed cluster still applied")
	}
}

// TestWarmingTimeout: an EDS cluster whose endpoints never arrive does not
// hold the configuration back forever; after WarmingTimeout it is applied
// with no endpoints (503 UH), as Envoy does after initial_fetch_timeout.
func TestWarmingTimeout(t *testing.T) {
	cp := startControlPlane(t, "127.0.0.1:0", nil)
	out := freeAddr(t)
	const lonely = "outbound|80||lonely.default.svc.cluster.local"
	snap := snapshot(t, "1",
		hcmListener(t, "outbound", out, "outbound"),
		routeConfig("outbound", vhost("lonely", []string{"lonely"}, toCluster(prefixMatch("/"), lonely))),
		edsCluster(t, lonely, "lonely.default.svc.cluster.local", "", false),
	)
	if err := cp.cache.SetSnapshot(t.Context(), "n1", snap); err != nil { // inconsistent on purpose
		t.Fatal(err)
	}
	start := time.Now()
	p := startProxy(t, cp.addr, nodemeta.Workload{ID: "n1", Service: "a", Outbound: out},
		func(c *Config) { c.WarmingTimeout = 300 * time.Millisecond })
	p.waitReady(t)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("applied after %s, before the warming timeout", d)
	}
	eventually(t, 5*time.Second, func() error {
		req := mustRequest(t, "http://"+out+"/", "lonely")
		resp, err := (&httpClient{}).do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != 503 || resp.body != "no healthy upstream" {
			return fmt.Errorf("status %d body %q; want 503 no healthy upstream", resp.StatusCode, resp.body)
		}
		return nil
	})
}

// TestDiscoveryRequests checks the wire protocol: wildcard CDS/LDS first
// with the node, then EDS and RDS for exactly the referenced names.
func TestDiscoveryRequests(t *testing.T) {
	m := newMesh(t)
	first := m.cp.waitRequest(t, config.ClusterType, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if len(first.GetResourceNames()) != 0 {
		t.Errorf("CDS subscription names = %v; want wildcard", first.GetResourceNames())
	}
	eds := m.cp.waitRequest(t, config.EndpointType, func(r *discoveryv3.DiscoveryRequest) bool { return len(r.GetResourceNames()) > 0 })
	if got, want := fmt.Sprint(eds.GetResourceNames()), fmt.Sprint(slices.Sorted(slices.Values([]string{detailsAll, ratingsAll, reviewsAll, reviewsV1, reviewsV2}))); got != want {
		t.Errorf("EDS names = %s; want %s", got, want)
	}
	rds := m.cp.waitRequest(t, config.RouteType, func(r *discoveryv3.DiscoveryRequest) bool { return len(r.GetResourceNames()) > 0 })
	if got := fmt.Sprint(rds.GetResourceNames()); got != "[inbound outbound]" {
		t.Errorf("RDS names = %s; want [inbound outbound]", got)
	}
	m.cp.mu.Lock()
	defer m.cp.mu.Unlock()
	if n := m.cp.requests[0].GetNode(); n.GetId() != m.node || n.GetMetadata().GetFields()[nodemeta.KeyOutbound].GetStringValue() != m.out {
		t.Errorf("first request node = %v; want the workload's node", n)
	}
}

func TestNACKBackoff(t *testing.T) {
	c := newADSClient(&Proxy{cfg: Config{BackoffInitial: 100 * time.Millisecond, BackoffMax: time.Second}}, nil)
	bad := fmt.Errorf("bad")
	steps := []struct {
		typeURL, version string
		nack             error
		want             time.Duration
	}{
		{config.ListenerType, "v2", bad, 0},
		{config.ListenerType, "v2", bad, 200 * time.Millisecond},
		{config.ListenerType, "v2", bad, 400 * time.Millisecond},
		{config.RouteType, "v2", bad, 0}, // per type
		{config.ListenerType, "v2", bad, 800 * time.Millisecond},
		{config.ListenerType, "v2", bad, time.Second},
		{config.ListenerType, "v2", bad, time.Second},
		{config.ListenerType, "v3", bad, 0}, // a new version is NACKed at once
		{config.ListenerType, "v4", nil, 0},
		{config.ListenerType, "v3", bad, 0},
	}
	for i, s := range steps {
		if got := c.NACKDelay(s.typeURL, s.version, s.nack); got != s.want {
			t.Errorf("step %d (%s %s): delay %s; want %s", i, config.KindName(s.typeURL), s.version, got, s.want)
		}
	}
}

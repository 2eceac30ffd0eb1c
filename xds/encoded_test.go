package xds

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testres "github.com/envoyproxy/go-control-plane/pkg/test/resource/v3"
	"google.golang.org/protobuf/proto"
)

// manyClusters is a snapshot of n EDS clusters and their endpoints, large
// enough for sharedCodec to send its bodies without copying; changed gets
// another endpoint port.
func manyClusters(t *testing.T, n int, changed string) (string, *cachev3.Snapshot) {
	t.Helper()
	var clusters, endpoints []types.Resource
	for i := range n {
		name := fmt.Sprintf("cluster-%03d", i)
		port := uint32(9000)
		if name == changed {
			port = 9001
		}
		clusters = append(clusters, testres.MakeCluster(testres.Ads, name))
		endpoints = append(endpoints, testres.MakeEndpoint(name, port))
	}
	return snapshot(t, map[resource.Type][]types.Resource{resource.ClusterType: clusters, resource.EndpointType: endpoints})
}

// TestSharedBodiesOnTheWire checks that resources marshalled once per
// snapshot and sent as shared bodies decode, on SotW and delta streams, to
// the snapshot's resources, and that delta sends only what changed.
func TestSharedBodiesOnTheWire(t *testing.T) {
	s, addr := startServer(t)
	v1, snap1 := manyClusters(t, 200, "")
	v2, snap2 := manyClusters(t, 200, "cluster-007")
	for _, id := range []string{"sotw-a", "sotw-b", "delta"} {
		if err := s.SetSnapshot(t.Context(), id, v1, snap1); err != nil {
			t.Fatal(err)
		}
	}
	want := snap1.GetResources(resource.ClusterType)
	for _, id := range []string{"sotw-a", "sotw-b"} {
		c := connectADS(t, addr, workload(id).Node())
		c.subscribe(t, resource.ClusterType)
		resp := c.recv(t)
		if resp.GetVersionInfo() != snap1.GetVersion(resource.ClusterType) || len(resp.GetResources()) != len(want) {
			t.Fatalf("%s: got %d clusters at %q; want %d at %q", id, len(resp.GetResources()), resp.GetVersionInfo(),
				len(want), snap1.GetVersion(resource.ClusterType))
		}
		for _, a := range resp.GetResources() {
			var got clusterv3.Cluster
			if err := a.UnmarshalTo(&got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, want[got.GetName()]) {
				t.Errorf("%s: cluster %s differs from the snapshot's", id, got.GetName())
			}
		}
	}

	c := connectDelta(t, addr, workload("delta").Node())
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"cluster-007", "cluster-010", "missing"}})
	resp := c.recv(t)
	if got := deltaNames(resp); fmt.Sprint(got) != "[cluster-007 cluster-010]" {
		t.Fatalf("delta endpoints: got %v; want [cluster-007 cluster-010]", got)
	}
	c.ack(t, resp)
	if err := s.SetSnapshot(t.Context(), "delta", v2, snap2); err != nil {
		t.Fatal(err)
	}
	resp = c.recv(t)
	if got := deltaNames(resp); fmt.Sprint(got) != "[cluster-007]" {
		t.Fatalf("after a change to cluster-007: got %v; want [cluster-007]", got)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := resp.GetResources()[0].GetResource().UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&cla, snap2.GetResources(resource.EndpointType)["cluster-007"]) {
		t.Error("cluster-007's endpoints differ from the new snapshot's")
	}
}

func deltaNames(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

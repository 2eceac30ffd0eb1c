package xds

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

// deltaClient is a minimal delta ADS client.
type deltaClient struct {
	*receiver[*discoveryv3.DeltaDiscoveryResponse]
	stream   discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node     *corev3.Node
	sentNode bool
}

func connectDelta(t *testing.T, addr string, node *corev3.Node) *deltaClient {
	t.Helper()
	stream, r := openStream(t, addr, func(ctx context.Context, c discoveryv3.AggregatedDiscoveryServiceClient) (discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, error) {
		return c.DeltaAggregatedResources(ctx)
	})
	return &deltaClient{receiver: r, stream: stream, node: node}
}

func (c *deltaClient) send(t *testing.T, req *discoveryv3.DeltaDiscoveryRequest) {
	t.Helper()
	if !c.sentNode {
		req.Node, c.sentNode = c.node, true
	}
	if err := c.stream.Send(req); err != nil {
		t.Fatalf("sending %s delta request: %v", req.GetTypeUrl(), err)
	}
}

func (c *deltaClient) ack(t *testing.T, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.Helper()
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

func (c *deltaClient) nack(t *testing.T, resp *discoveryv3.DeltaDiscoveryResponse, msg string) {
	t.Helper()
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: msg}})
}

func TestDelta(t *testing.T) {
	s, addr := startServer(t)
	v1, snap1 := sidecar(t, "reviews", 15001, 9080)
	v2, snap2 := sidecar(t, "reviews", 15001, 9081) // endpoints only
	bad, badSnap := sidecar(t, "reviews", 15002, 9081)
	for _, id := range []string{"sotw", "delta"} {
		if err := s.SetSnapshot(t.Context(), id, v1, snap1); err != nil {
			t.Fatal(err)
		}
	}

	// A SotW node alongside: go-control-plane numbers SotW and delta
	// streams separately, so both are stream 1.
	sc := connectADS(t, addr, workload("sotw").Node())
	sc.subscribeSidecar(t, "reviews")
	sc.recvAndAck(t, 4)
	waitState(t, s, "sotw", StateSynced, v1)

	c := connectDelta(t, addr, workload("delta").Node())
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"reviews"}})
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"outbound"}})
	for range 4 {
		resp := c.recv(t)
		if len(resp.GetResources()) != 1 {
			t.Errorf("%s: got %d resources; want 1", resp.GetTypeUrl(), len(resp.GetResources()))
		}
		c.ack(t, resp)
	}
	waitState(t, s, "delta", StateSynced, v1)

	// Endpoint-only change: only endpoints are sent, and their ACK syncs.
	if err := s.SetSnapshot(t.Context(), "delta", v2, snap2); err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	if resp.GetTypeUrl() != resource.EndpointType || resp.GetSystemVersionInfo() != snap2.GetVersion(resource.EndpointType) {
		t.Fatalf("got %s %q; want endpoints at %q", resp.GetTypeUrl(), resp.GetSystemVersionInfo(), snap2.GetVersion(resource.EndpointType))
	}
	waitState(t, s, "delta", StateStale, v1)
	c.ack(t, resp)
	waitState(t, s, "delta", StateSynced, v2)

	// NACK, then roll back.
	if err := s.SetSnapshot(t.Context(), "delta", bad, badSnap); err != nil {
		t.Fatal(err)
	}
	resp = c.recv(t)
	c.nack(t, resp, "bad listener")
	st := waitNode(t, s, "delta", "NACKED", func(st NodeStatus, ok bool) bool { return ok && st.State == StateNacked })
	if st.NACK.Version != bad || st.NACK.TypeURL != resource.ListenerType || st.NACK.Error != "bad listener" {
		t.Errorf("NACK = %+v; want %s listener \"bad listener\"", st.NACK, bad)
	}
	if err := s.SetSnapshot(t.Context(), "delta", v2, snap2); err != nil {
		t.Fatal(err)
	}
	resp = c.recv(t)
	if resp.GetTypeUrl() != resource.ListenerType {
		t.Fatalf("after rollback got %s; want the listener", resp.GetTypeUrl())
	}
	c.ack(t, resp)
	waitState(t, s, "delta", StateSynced, v2)

	c.close()
	waitNode(t, s, "delta", "disconnected", func(st NodeStatus, ok bool) bool { return ok && !st.Connected })
	if st, _ := s.Node("sotw"); !st.Connected {
		t.Error("closing the delta stream disconnected the SotW node")
	}
}

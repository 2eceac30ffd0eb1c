package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// adsNode is a bare ADS client standing in for a proxy whose behaviour a
// test controls: it announces a Workload (with any ADMIN_ADDR, e.g. a black
// hole), subscribes to every resource type, and ACKs what it is sent,
// unless told to hold its ACKs (a slow proxy: the controller sees it STALE
// until release). It reconnects when the stream breaks (a controller
// restart), reporting the versions it last ACKed, as Envoy does.
type adsNode struct {
	w nodemeta.Workload

	mu      sync.Mutex                                // protects the fields below
	holding bool                                      // ACKs are held back
	acked   map[string]string                         // type URL -> version last ACKed
	pending map[string]*discoveryv3.DiscoveryResponse // type URL -> newest unACKed response, while holding
	stream  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

// adsTypes are the types an adsNode subscribes to, all as wildcards (the
// snapshot cache answers an empty name list with every resource).
var adsTypes = []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType, resourcev3.EndpointType}

// startADSNode connects w to the xDS server at xdsAddr until the test ends.
func startADSNode(t testing.TB, xdsAddr string, w nodemeta.Workload) *adsNode {
	t.Helper()
	conn, err := grpc.NewClient(xdsAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatalf("dialing xDS for node %s: %v", w.ID, err)
	}
	n := &adsNode{w: w, acked: map[string]string{}, pending: map[string]*discoveryv3.DiscoveryResponse{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
		for ctx.Err() == nil {
			if err := n.session(ctx, client); err != nil && ctx.Err() == nil {
				t.Logf("ads node %s: stream ended: %v; reconnecting", w.ID, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		e2etest.WaitDone(t, "ads node "+w.ID, done, e2etest.StopTimeout)
		conn.Close()
	})
	return n
}

// session runs one ADS stream until it fails.
func (n *adsNode) session(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := client.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.stream = stream
	var reqs []*discoveryv3.DiscoveryRequest
	for _, typ := range adsTypes {
		reqs = append(reqs, &discoveryv3.DiscoveryRequest{Node: n.w.Node(), TypeUrl: typ, VersionInfo: n.acked[typ]})
	}
	clear(n.pending)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.stream = nil
		n.mu.Unlock()
	}()
	for _, req := range reqs {
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		n.mu.Lock()
		if n.holding {
			n.pending[resp.GetTypeUrl()] = resp
			n.mu.Unlock()
			continue
		}
		err = n.ackLocked(resp)
		n.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// ackLocked ACKs resp on the current stream; n.mu must be held.
func (n *adsNode) ackLocked(resp *discoveryv3.DiscoveryResponse) error {
	if n.stream == nil {
		return errors.New("no stream")
	}
	n.acked[resp.GetTypeUrl()] = resp.GetVersionInfo()
	return n.stream.Send(&discoveryv3.DiscoveryRequest{
		Node: n.w.Node(), TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
	})
}

// hold makes the node stop ACKing: what it is sent from now on stays
// pending (it keeps running what it ACKed last).
func (n *adsNode) hold() {
	n.mu.Lock()
	n.holding = true
	n.mu.Unlock()
}

// release ACKs what is pending and goes back to ACKing at once.
func (n *adsNode) release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.holding = false
	for typ, resp := range n.pending {
		_ = n.ackLocked(resp) // a broken stream reconnects and is answered afresh
		delete(n.pending, typ)
	}
}

// pendingCount returns how many types have a response waiting for an ACK.
func (n *adsNode) pendingCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending)
}

package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testres "github.com/envoyproxy/go-control-plane/pkg/test/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

// xdsTypes are the four types a sidecar subscribes to, in Envoy's order.
var xdsTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// startServer serves a new Server on loopback until the test ends.
func startServer(t *testing.T, opts ...Option) (*Server, string) {
	t.Helper()
	lis := testnet.Listen(t)
	s := NewServer(opts...)
	testnet.Serve(t, lis, s.Serve)
	return s, lis.Addr().String()
}

// dial opens a client connection to the server.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// workload is a valid sidecar node.
func workload(id string) nodemeta.Workload {
	return nodemeta.Workload{ID: id, Service: "productpage", Role: nodemeta.RoleSidecar,
		Outbound: "127.0.0.1:15001", Labels: map[string]string{"app": "productpage", "version": "v1"}}
}

// snapshot builds a snapshot whose every type carries a content hash of
// its resources, as the compiler does, and returns it with its label.
func snapshot(t *testing.T, res map[resource.Type][]types.Resource) (string, *cachev3.Snapshot) {
	t.Helper()
	snap := &cachev3.Snapshot{}
	label := sha256.New()
	for _, typ := range slices.Sorted(func(yield func(string) bool) {
		for k := range res {
			if !yield(k) {
				return
			}
		}
	}) {
		h := sha256.New()
		for _, r := range res[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(b)
		}
		v := hex.EncodeToString(h.Sum(nil))[:12]
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(v, res[typ])
		label.Write([]byte(typ + "=" + v + ";"))
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(label.Sum(nil))[:16], snap
}

// sidecar is a consistent sidecar snapshot: listener "outbound" on
// listenerPort -> route "outbound" -> EDS cluster -> one endpoint on epPort.
func sidecar(t *testing.T, cluster string, listenerPort, epPort uint32) (string, *cachev3.Snapshot) {
	t.Helper()
	return snapshot(t, map[resource.Type][]types.Resource{
		resource.ListenerType: {testres.MakeRouteHTTPListener(testres.Ads, "outbound", listenerPort, "outbound")},
		resource.RouteType:    {testres.MakeRouteConfig("outbound", cluster)},
		resource.ClusterType:  {testres.MakeCluster(testres.Ads, cluster)},
		resource.EndpointType: {testres.MakeEndpoint(cluster, epPort)},
	})
}

// receiver runs the receive side of an ADS stream, SotW or delta: a
// goroutine moves responses to resps until the stream ends.
type receiver[Resp any] struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once the goroutine has stopped
	resps  chan Resp
	err    error // the stream's end, once resps is closed
}

// openStream opens a stream to addr with open and starts its receiver; the
// test's cleanup closes it.
func openStream[Resp any, S interface{ Recv() (Resp, error) }](t *testing.T, addr string,
	open func(context.Context, discoveryv3.AggregatedDiscoveryServiceClient) (S, error)) (S, *receiver[Resp]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := open(ctx, discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &receiver[Resp]{cancel: cancel, done: make(chan struct{}), resps: make(chan Resp, 64)}
	go func() {
		defer close(r.done)
		defer close(r.resps)
		for {
			resp, err := stream.Recv()
			if err != nil {
				r.err = err
				return
			}
			r.resps <- resp
		}
	}()
	t.Cleanup(r.close)
	return stream, r
}

// close ends the stream and waits for the receiver to stop.
func (r *receiver[Resp]) close() {
	r.cancel()
	<-r.done
}

// recv returns the next response.
func (r *receiver[Resp]) recv(t *testing.T) Resp {
	t.Helper()
	select {
	case resp, ok := <-r.resps:
		if !ok {
			t.Fatalf("stream ended: %v", r.err)
		}
		return resp
	case <-time.After(waitFor):
		t.Fatal("no response")
	}
	var zero Resp
	return zero
}

// streamErr waits for the stream to end and returns why.
func (r *receiver[Resp]) streamErr(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		t.Fatal("stream did not end")
	}
	return nil
}

// adsClient is a minimal SotW ADS client, as Envoy behaves: the node only
// on the first request, one subscription per type, ACK by nonce.
type adsClient struct {
	*receiver[*discoveryv3.DiscoveryResponse]
	stream   discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node     *corev3.Node
	sentNode bool
	names    map[string][]string // subscription per type
	versions map[string]string   // last ACKed version per type
}

// connectADS opens an ADS stream for node.
func connectADS(t *testing.T, addr string, node *corev3.Node) *adsClient {
	t.Helper()
	stream, r := openStream(t, addr, func(ctx context.Context, c discoveryv3.AggregatedDiscoveryServiceClient) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
		return c.StreamAggregatedResources(ctx)
	})
	return &adsClient{receiver: r, stream: stream, node: node, names: map[string][]string{}, versions: map[string]string{}}
}

func (c *adsClient) send(t *testing.T, req *discoveryv3.DiscoveryRequest) {
	t.Helper()
	if !c.sentNode {
		req.Node, c.sentNode = c.node, true
	}
	if err := c.stream.Send(req); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("sending %s request: %v", req.GetTypeUrl(), err)
	}
}

// subscribe sends a type's first request; no names is a wildcard.
func (c *adsClient) subscribe(t *testing.T, typeURL string, names ...string) {
	t.Helper()
	c.names[typeURL] = names
	c.send(t, &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: c.versions[typeURL]})
}

func (c *adsClient) ack(t *testing.T, resp *discoveryv3.DiscoveryResponse) {
	t.Helper()
	c.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	c.send(t, &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: c.names[resp.GetTypeUrl()],
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
}

func (c *adsClient) nack(t *testing.T, resp *discoveryv3.DiscoveryResponse, msg string) {
	t.Helper()
	c.send(t, &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: c.names[resp.GetTypeUrl()],
		VersionInfo: c.versions[resp.GetTypeUrl()], ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: msg}})
}

// subscribeSidecar subscribes as a sidecar of the sidecar fixture: LDS and
// CDS wildcard, RDS and EDS by name.
func (c *adsClient) subscribeSidecar(t *testing.T, cluster string) {
	t.Helper()
	c.subscribe(t, resource.ClusterType)
	c.subscribe(t, resource.EndpointType, cluster)
	c.subscribe(t, resource.ListenerType)
	c.subscribe(t, resource.RouteType, "outbound")
}

// recvAndAck receives n responses, ACKs each and returns them by type.
func (c *adsClient) recvAndAck(t *testing.T, n int) map[string]*discoveryv3.DiscoveryResponse {
	t.Helper()
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for range n {
		resp := c.recv(t)
		got[resp.GetTypeUrl()] = resp
		c.ack(t, resp)
	}
	return got
}

// waitNode polls the node's status until cond holds.
func waitNode(t *testing.T, s *Server, id, what string, cond func(NodeStatus, bool) bool) NodeStatus {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st, ok := s.Node(id)
		if cond(st, ok) {
			return st
		}
		select {
		case <-deadline.C:
			t.Fatalf("node %s: timed out waiting for %s; last status %+v (known %t)", id, what, st, ok)
		case <-tick.C:
		}
	}
}

// waitState waits for the node to be connected in state with Acked acked.
func waitState(t *testing.T, s *Server, id string, state SyncState, acked string) NodeStatus {
	t.Helper()
	return waitNode(t, s, id, string(state)+" acked "+acked, func(st NodeStatus, ok bool) bool {
		return ok && st.Connected && st.State == state && st.Acked == acked
	})
}

// resourceNames decodes the names in a response.
func resourceNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var names []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, cachev3.GetResourceName(m))
	}
	slices.Sort(names)
	return names
}

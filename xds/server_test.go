package xds

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testres "github.com/envoyproxy/go-control-plane/pkg/test/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

func TestAssignAckSynced(t *testing.T) {
	s, addr := startServer(t)
	label, snap := sidecar(t, "reviews", 15001, 9080)

	// Assigned before the node connects: known, not connected, stale.
	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	st, ok := s.Node("n1")
	if !ok || st.Connected || st.Assigned != label || st.State != StateStale {
		t.Fatalf("before connect: got %+v (known %t); want known, disconnected, Assigned %q, STALE", st, ok, label)
	}

	c := connectADS(t, addr, workload("n1").Node())
	c.subscribeSidecar(t, "reviews")
	got := c.recvAndAck(t, 4)
	for _, typ := range xdsTypes {
		if got[typ] == nil {
			t.Fatalf("no %s response", typ)
		}
		if v := got[typ].GetVersionInfo(); v != snap.GetVersion(typ) {
			t.Errorf("%s version = %q; want %q", typ, v, snap.GetVersion(typ))
		}
	}

	st = waitState(t, s, "n1", StateSynced, label)
	if st.Assigned != label || st.NACK != nil {
		t.Errorf("got Assigned %q NACK %v; want %q, nil", st.Assigned, st.NACK, label)
	}
	if st.Workload.Service != "productpage" || st.Workload.Labels["version"] != "v1" {
		t.Errorf("Workload = %+v; want the node's metadata", st.Workload)
	}
	if st.ConnectedAt.IsZero() || st.LastSeen.Before(st.ConnectedAt) {
		t.Errorf("ConnectedAt %v LastSeen %v; want set, LastSeen >= ConnectedAt", st.ConnectedAt, st.LastSeen)
	}
	for _, typ := range xdsTypes {
		ts := st.Types[typ]
		if want := snap.GetVersion(typ); ts.Sent != want || ts.Acked != want || ts.Nacked != "" {
			t.Errorf("Types[%s] = %+v; want sent and acked %q", typ, ts, want)
		}
	}
	if nodes := s.Nodes(); len(nodes) != 1 || nodes[0].Workload.ID != "n1" {
		t.Errorf("Nodes() = %+v; want n1 only", nodes)
	}
}

func TestNACK(t *testing.T) {
	s, addr := startServer(t)
	good, goodSnap := sidecar(t, "reviews", 15001, 9080)
	bad, badSnap := sidecar(t, "reviews", 15002, 9080) // only the listener differs
	if err := s.SetSnapshot(t.Context(), "n1", good, goodSnap); err != nil {
		t.Fatal(err)
	}
	c := connectADS(t, addr, workload("n1").Node())
	c.subscribeSidecar(t, "reviews")
	synced := c.recvAndAck(t, 4)
	waitState(t, s, "n1", StateSynced, good)

	if err := s.SetSnapshot(t.Context(), "n1", bad, badSnap); err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	if resp.GetTypeUrl() != resource.ListenerType {
		t.Fatalf("got a %s response; want only the listener to be re-sent", resp.GetTypeUrl())
	}
	const msg = "listener outbound: cannot bind 0.0.0.0:15002: address already in use"
	c.nack(t, resp, msg)

	st := waitNode(t, s, "n1", "NACKED", func(st NodeStatus, ok bool) bool { return ok && st.State == StateNacked })
	if st.NACK == nil || st.NACK.Version != bad || st.NACK.TypeURL != resource.ListenerType || st.NACK.Error != msg || st.NACK.At.IsZero() {
		t.Fatalf("NACK = %+v; want version %q, type %s, error %q", st.NACK, bad, resource.ListenerType, msg)
	}
	if st.Acked != good || st.Assigned != bad {
		t.Errorf("Acked %q Assigned %q; want %q (it still runs it), %q", st.Acked, st.Assigned, good, bad)
	}
	if ts := st.Types[resource.ListenerType]; ts.Nacked != badSnap.GetVersion(resource.ListenerType) || ts.Error != msg {
		t.Errorf("Types[listener] = %+v; want nacked %q", ts, badSnap.GetVersion(resource.ListenerType))
	}
	if got := gather(t, s)[`gitmesh_xds_nacks_total{type="envoy.config.listener.v3.Listener"}`]; got != 1 {
		t.Errorf("gitmesh_xds_nacks_total{listener} = %v; want 1", got)
	}

	// Barrier: the stream handles requests in order, so once a later
	// request is seen the NACK's watch exists. It must be parked, not
	// answered with the rejected listener again.
	before := st.LastSeen
	c.ack(t, synced[resource.ClusterType])
	waitNode(t, s, "n1", "the next request", func(st NodeStatus, ok bool) bool { return st.LastSeen.After(before) })

	// Rolling back sends the good listener, which the node ACKs.
	if err := s.SetSnapshot(t.Context(), "n1", good, goodSnap); err != nil {
		t.Fatal(err)
	}
	resp = c.recv(t)
	if resp.GetTypeUrl() != resource.ListenerType || resp.GetVersionInfo() != goodSnap.GetVersion(resource.ListenerType) {
		t.Fatalf("after rollback got %s %q; want the good listener %q (the rejected one must not be resent)",
			resp.GetTypeUrl(), resp.GetVersionInfo(), goodSnap.GetVersion(resource.ListenerType))
	}
	c.ack(t, resp)
	st = waitState(t, s, "n1", StateSynced, good)
	if st.NACK != nil {
		t.Errorf("NACK = %+v after rollback; want nil", st.NACK)
	}
}

func TestEndpointOnlyChange(t *testing.T) {
	s, addr := startServer(t)
	v1, snap1 := sidecar(t, "reviews", 15001, 9080)
	v2, snap2 := sidecar(t, "reviews", 15001, 9081)
	if err := s.SetSnapshot(t.Context(), "n1", v1, snap1); err != nil {
		t.Fatal(err)
	}
	c := connectADS(t, addr, workload("n1").Node())
	c.subscribeSidecar(t, "reviews")
	c.recvAndAck(t, 4)
	waitState(t, s, "n1", StateSynced, v1)

	if err := s.SetSnapshot(t.Context(), "n1", v2, snap2); err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	if resp.GetTypeUrl() != resource.EndpointType || resp.GetVersionInfo() != snap2.GetVersion(resource.EndpointType) {
		t.Fatalf("got %s %q; want only endpoints at %q", resp.GetTypeUrl(), resp.GetVersionInfo(), snap2.GetVersion(resource.EndpointType))
	}
	// Sent, not ACKed yet: it still runs v1.
	st := waitState(t, s, "n1", StateStale, v1)
	if st.Assigned != v2 {
		t.Errorf("Assigned = %q; want %q", st.Assigned, v2)
	}
	c.ack(t, resp)
	st = waitState(t, s, "n1", StateSynced, v2)
	if got, want := st.Types[resource.ListenerType].Acked, snap1.GetVersion(resource.ListenerType); got != want {
		t.Errorf("listener acked %q; want the unchanged %q", got, want)
	}
}

func TestReconnectKeepsAssignment(t *testing.T) {
	s, addr := startServer(t)
	label, snap := sidecar(t, "reviews", 15001, 9080)
	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	c1 := connectADS(t, addr, workload("n1").Node())
	c1.subscribeSidecar(t, "reviews")
	c1.recvAndAck(t, 4)
	first := waitState(t, s, "n1", StateSynced, label)

	c1.close()
	st := waitNode(t, s, "n1", "disconnected", func(st NodeStatus, ok bool) bool { return ok && !st.Connected })
	if st.Assigned != label || st.Acked != label {
		t.Errorf("after disconnect: Assigned %q Acked %q; want both %q", st.Assigned, st.Acked, label)
	}

	// Like Envoy, the reconnecting node reports in version_info what it
	// runs; that alone shows it synced, before it ACKs anything.
	c2 := connectADS(t, addr, workload("n1").Node())
	c2.versions = c1.versions
	c2.subscribeSidecar(t, "reviews")
	waitState(t, s, "n1", StateSynced, label)
	got := c2.recvAndAck(t, 4)
	if v := got[resource.ClusterType].GetVersionInfo(); v != snap.GetVersion(resource.ClusterType) {
		t.Errorf("clusters after reconnect at %q; want %q", v, snap.GetVersion(resource.ClusterType))
	}
	st = waitState(t, s, "n1", StateSynced, label)
	if !st.ConnectedAt.After(first.ConnectedAt) {
		t.Errorf("ConnectedAt %v; want after the first connection's %v", st.ConnectedAt, first.ConnectedAt)
	}
}

func TestForget(t *testing.T) {
	t.Run("after grace period", func(t *testing.T) {
		s, addr := startServer(t, WithGracePeriod(40*time.Millisecond))
		label, snap := sidecar(t, "reviews", 15001, 9080)
		if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
			t.Fatal(err)
		}
		c := connectADS(t, addr, workload("n1").Node())
		c.subscribeSidecar(t, "reviews")
		c.recvAndAck(t, 4)
		waitState(t, s, "n1", StateSynced, label)
		c.close()
		waitNode(t, s, "n1", "forgotten", func(_ NodeStatus, ok bool) bool { return !ok })

		// Its snapshot went too: a new connection gets nothing until assigned.
		c = connectADS(t, addr, workload("n1").Node())
		c.subscribe(t, resource.ClusterType)
		waitNode(t, s, "n1", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })
		if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
			t.Fatal(err)
		}
		if resp := c.recv(t); resp.GetVersionInfo() != snap.GetVersion(resource.ClusterType) {
			t.Errorf("got %s %q; want clusters at %q", resp.GetTypeUrl(), resp.GetVersionInfo(), snap.GetVersion(resource.ClusterType))
		}
	})
	t.Run("ClearSnapshot", func(t *testing.T) {
		s, addr := startServer(t)
		label, snap := sidecar(t, "reviews", 15001, 9080)
		for _, id := range []string{"connected", "gone"} {
			if err := s.SetSnapshot(t.Context(), id, label, snap); err != nil {
				t.Fatal(err)
			}
		}
		c := connectADS(t, addr, workload("connected").Node())
		c.subscribeSidecar(t, "reviews")
		c.recvAndAck(t, 4)
		waitState(t, s, "connected", StateSynced, label)

		s.ClearSnapshot("gone")
		if _, ok := s.Node("gone"); ok {
			t.Error("a cleared, disconnected node is still known")
		}
		s.ClearSnapshot("connected")
		st, ok := s.Node("connected")
		if !ok || !st.Connected || st.Assigned != "" || st.State != StateStale {
			t.Errorf("cleared connected node: %+v (known %t); want connected, unassigned, STALE", st, ok)
		}

		// The open stream still gets the next assignment.
		v2, snap2 := sidecar(t, "reviews", 15001, 9081)
		if err := s.SetSnapshot(t.Context(), "connected", v2, snap2); err != nil {
			t.Fatal(err)
		}
		c.ack(t, c.recv(t))
		waitState(t, s, "connected", StateSynced, v2)
	})
}

func TestInvalidMetadataRefused(t *testing.T) {
	badRole := workload("n1").Node()
	badRole.Metadata.Fields[nodemeta.KeyRole] = structpb.NewStringValue("banana")
	badAddr := workload("n2").Node()
	badAddr.Metadata.Fields[nodemeta.KeyOutbound] = structpb.NewStringValue("nope")

	tests := []struct {
		name string
		node func() *discoveryv3.DiscoveryRequest
		want string
	}{
		{"bad role", nil, `ROLE "banana" is neither`},
		{"bad address", nil, `address "nope"`},
		{"no node id", nil, "node id is empty"},
	}
	nodes := map[string]*discoveryv3.DiscoveryRequest{
		"bad role":    {Node: badRole},
		"bad address": {Node: badAddr},
		"no node id":  {},
	}
	s, addr := startServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connectADS(t, addr, nodes[tt.name].GetNode())
			c.sentNode = true // send exactly the node under test, even none
			c.send(t, &discoveryv3.DiscoveryRequest{Node: nodes[tt.name].GetNode(), TypeUrl: resource.ClusterType})
			err := c.streamErr(t)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Errorf("stream ended with %v; want InvalidArgument containing %q", err, tt.want)
			}
		})
	}
	if nodes := s.Nodes(); len(nodes) != 0 {
		t.Errorf("Nodes() = %+v; want none", nodes)
	}
}

func TestChanged(t *testing.T) {
	s, addr := startServer(t)
	label, snap := sidecar(t, "reviews", 15001, 9080)
	bad, badSnap := sidecar(t, "reviews", 15002, 9080)
	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	drain := func() {
		select {
		case <-s.Changed():
		default:
		}
	}
	fired := func(what string) {
		t.Helper()
		select {
		case <-s.Changed():
		case <-time.After(waitFor):
			t.Fatalf("Changed did not fire on %s", what)
		}
	}

	drain()
	c := connectADS(t, addr, workload("n1").Node())
	c.subscribeSidecar(t, "reviews")
	fired("connect")
	c.recvAndAck(t, 4)
	waitState(t, s, "n1", StateSynced, label)

	drain()
	if err := s.SetSnapshot(t.Context(), "n1", bad, badSnap); err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	drain()
	c.nack(t, resp, "no")
	fired("NACK")
	waitNode(t, s, "n1", "NACKED", func(st NodeStatus, ok bool) bool { return ok && st.State == StateNacked })

	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	resp = c.recv(t)
	drain()
	c.ack(t, resp)
	fired("ACK")
	waitState(t, s, "n1", StateSynced, label)

	drain()
	c.close()
	fired("disconnect")
}

func TestNodesGetTheirOwnSnapshots(t *testing.T) {
	s, addr := startServer(t)
	snaps := map[string]string{"n1": "reviews", "n2": "ratings"}
	labels := map[string]string{}
	for id, cluster := range snaps {
		label, snap := sidecar(t, cluster, 15001, 9080)
		labels[id] = label
		if err := s.SetSnapshot(t.Context(), id, label, snap); err != nil {
			t.Fatal(err)
		}
	}
	for id, cluster := range snaps {
		c := connectADS(t, addr, workload(id).Node())
		c.subscribeSidecar(t, cluster)
		got := c.recvAndAck(t, 4)
		if names := resourceNames(t, got[resource.ClusterType]); !slices.Equal(names, []string{cluster}) {
			t.Errorf("%s got clusters %v; want [%s]", id, names, cluster)
		}
	}
	for id := range snaps {
		waitState(t, s, id, StateSynced, labels[id])
	}
	if nodes := s.Nodes(); len(nodes) != 2 || nodes[0].Workload.ID != "n1" || nodes[1].Workload.ID != "n2" {
		t.Errorf("Nodes() = %+v; want n1, n2 in order", nodes)
	}
}

// TestLDSByNameSubset is the case that sets the cache's ads flag to false:
// a proxyless gRPC client subscribes LDS by the names it dials, a subset of
// the snapshot's listeners, one of which does not exist. With ads=true the
// cache would never answer it.
func TestLDSByNameSubset(t *testing.T) {
	s, addr := startServer(t)
	const reviews, ratings = "reviews.default.svc.cluster.local:9080", "ratings.default.svc.cluster.local:9080"
	label, snap := snapshot(t, map[resource.Type][]types.Resource{
		resource.ListenerType: {
			testres.MakeRouteHTTPListener(testres.Ads, reviews, 9080, "reviews"),
			testres.MakeRouteHTTPListener(testres.Ads, ratings, 9081, "ratings"),
		},
		resource.RouteType:    {testres.MakeRouteConfig("reviews", "reviews"), testres.MakeRouteConfig("ratings", "ratings")},
		resource.ClusterType:  {testres.MakeCluster(testres.Ads, "reviews"), testres.MakeCluster(testres.Ads, "ratings")},
		resource.EndpointType: {testres.MakeEndpoint("reviews", 9080), testres.MakeEndpoint("ratings", 9080)},
	})
	if err := s.SetSnapshot(t.Context(), "grpc-client", label, snap); err != nil {
		t.Fatal(err)
	}
	w := workload("grpc-client")
	w.Generator, w.Outbound = nodemeta.GeneratorGRPC, ""
	c := connectADS(t, addr, w.Node())
	c.subscribe(t, resource.ListenerType, reviews, "missing.default.svc.cluster.local:80")
	resp := c.recv(t)
	if names := resourceNames(t, resp); !slices.Equal(names, []string{reviews}) {
		t.Fatalf("got listeners %v; want [%s]", names, reviews)
	}
	c.ack(t, resp)
	waitNode(t, s, "grpc-client", "listener ACK", func(st NodeStatus, ok bool) bool {
		return ok && st.Types[resource.ListenerType].Acked == snap.GetVersion(resource.ListenerType)
	})
}

func TestPerTypeService(t *testing.T) {
	s, addr := startServer(t)
	label, snap := sidecar(t, "reviews", 15001, 9080)
	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	cds, err := clusterservice.NewClusterDiscoveryServiceClient(dial(t, addr)).StreamClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cds.Send(&discoveryv3.DiscoveryRequest{Node: workload("n1").Node()}); err != nil {
		t.Fatal(err)
	}
	resp, err := cds.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if names := resourceNames(t, resp); !slices.Equal(names, []string{"reviews"}) {
		t.Errorf("CDS got %v; want [reviews]", names)
	}
	if err := cds.Send(&discoveryv3.DiscoveryRequest{VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitNode(t, s, "n1", "CDS ACK", func(st NodeStatus, ok bool) bool {
		return ok && st.Types[resource.ClusterType].Acked == snap.GetVersion(resource.ClusterType)
	})
}

func TestSetSnapshotRejects(t *testing.T) {
	s := NewServer()
	_, good := sidecar(t, "reviews", 15001, 9080)
	inconsistent := &cachev3.Snapshot{}
	inconsistent.Resources[types.Cluster] = cachev3.NewResources("c1", []types.Resource{testres.MakeCluster(testres.Ads, "reviews")})
	unversioned := &cachev3.Snapshot{}
	unversioned.Resources[types.Cluster] = cachev3.NewResources("", []types.Resource{testres.MakeCluster(testres.Ads, "static")})
	unversioned.Resources[types.Endpoint] = cachev3.NewResources("e1", []types.Resource{testres.MakeEndpoint("static", 1)})

	tests := []struct {
		name, node, version string
		snap                *cachev3.Snapshot
		want                string
	}{
		{"empty label", "n1", "", good, "version label is empty"},
		{"empty node", "", "v1", good, "node id is empty"},
		{"nil snapshot", "n1", "v1", nil, "nil snapshot"},
		{"inconsistent", "n1", "v1", inconsistent, "mismatched"},
		{"type without version", "n1", "v1", unversioned, "no version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SetSnapshot(t.Context(), tt.node, tt.version, tt.snap)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SetSnapshot = %v; want an error containing %q", err, tt.want)
			}
		})
	}
	if nodes := s.Nodes(); len(nodes) != 0 {
		t.Errorf("Nodes() = %+v; want none after rejected assignments", nodes)
	}
}

func TestEmptyTypeCountsAsAcked(t *testing.T) {
	// A sidecar with no EDS cluster: the snapshot versions an empty EDS
	// type the node never subscribes to.
	s, addr := startServer(t)
	label, snap := snapshot(t, map[resource.Type][]types.Resource{
		resource.ListenerType: {testres.MakeTCPListener("inbound", 15006, "inbound|8080||")},
		resource.ClusterType:  {},
		resource.EndpointType: {},
	})
	if err := s.SetSnapshot(t.Context(), "n1", label, snap); err != nil {
		t.Fatal(err)
	}
	c := connectADS(t, addr, workload("n1").Node())
	c.subscribe(t, resource.ListenerType)
	c.subscribe(t, resource.ClusterType)
	c.recvAndAck(t, 2)
	waitState(t, s, "n1", StateSynced, label)
}

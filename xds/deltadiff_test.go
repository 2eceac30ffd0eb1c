package xds

import (
	"fmt"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	testres "github.com/envoyproxy/go-control-plane/pkg/test/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestDeltaDiff walks a wildcard CDS and a named EDS delta subscription
// through snapshots that change, add and remove resources, and checks
// that each response carries exactly the difference, and that ACKs get
// no response (the first response after each snapshot is that
// snapshot's).
func TestDeltaDiff(t *testing.T) {
	s, addr := startServer(t)
	// clusters returns a snapshot of the named EDS clusters, each with an
	// endpoint on port.
	clusters := func(port uint32, names ...string) (string, map[resource.Type][]types.Resource) {
		var cs, es []types.Resource
		for _, n := range names {
			cs = append(cs, testres.MakeCluster(testres.Ads, n))
			es = append(es, testres.MakeEndpoint(n, port))
		}
		return fmt.Sprint(port, names), map[resource.Type][]types.Resource{resource.ClusterType: cs, resource.EndpointType: es}
	}
	set := func(port uint32, names ...string) {
		t.Helper()
		_, res := clusters(port, names...)
		v, snap := snapshot(t, res)
		if err := s.SetSnapshot(t.Context(), "d", v, snap); err != nil {
			t.Fatal(err)
		}
	}
	set(9000, "a", "b", "c")
	c := connectDelta(t, addr, workload("d").Node())
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a", "b", "c"}})
	first := map[string]*discoveryv3.DeltaDiscoveryResponse{}
	for range 2 {
		resp := c.recv(t)
		first[resp.GetTypeUrl()] = resp
		c.ack(t, resp)
	}
	for _, typ := range []string{resource.ClusterType, resource.EndpointType} {
		if got := fmt.Sprint(deltaNames(first[typ])); got != "[a b c]" {
			t.Fatalf("%s: first response %s; want [a b c]", typ, got)
		}
	}

	steps := []struct {
		name        string
		port        uint32
		names       []string
		wantType    string // the one type that changes
		wantChanged string
		wantRemoved string
	}{
		{"endpoints of every cluster change", 9001, []string{"a", "b", "c"}, resource.EndpointType, "[a b c]", "[]"},
		{"a subscribed cluster goes away", 9001, []string{"a", "b"}, "", "[]", "[c]"},
		{"a new cluster appears", 9001, []string{"a", "b", "d"}, resource.ClusterType, "[d]", "[]"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			set(st.port, st.names...)
			want := 1
			if st.wantType == "" {
				want = 2 // CDS and EDS both lose c
			}
			for range want {
				resp := c.recv(t)
				if st.wantType != "" && resp.GetTypeUrl() != st.wantType {
					t.Fatalf("a %s response; want only %s", resp.GetTypeUrl(), st.wantType)
				}
				if got := fmt.Sprint(deltaNames(resp)); got != st.wantChanged {
					t.Errorf("%s: changed %s; want %s", resp.GetTypeUrl(), got, st.wantChanged)
				}
				if got := fmt.Sprint(resp.GetRemovedResources()); got != st.wantRemoved {
					t.Errorf("%s: removed %s; want %s", resp.GetTypeUrl(), got, st.wantRemoved)
				}
				c.ack(t, resp)
			}
		})
	}
}

// TestSameResources compares encoded types of separately built snapshots.
func TestSameResources(t *testing.T) {
	typ := func(n int, changed string) *encodedType {
		t.Helper()
		_, snap := manyClusters(t, n, changed)
		e, err := newEncodedSnapshot(snap, nil).typ(resource.EndpointType)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	base := typ(10, "")
	tests := []struct {
		name  string
		other *encodedType
		want  bool
	}{
		{"itself", base, true},
		{"an equal snapshot", typ(10, ""), true},
		{"one resource changed", typ(10, "cluster-004"), false},
		{"one resource more", typ(11, ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // computed, then remembered
				if got := base.sameResources(tt.other); got != tt.want {
					t.Errorf("sameResources = %t; want %t", got, tt.want)
				}
			}
		})
	}
}

// TestDeltaWildcardRecord checks what a wildcard delta stream's returned
// map holds after a response (one entry, whatever the number of
// resources), and that a record the cache no longer knows, or an entry
// go-control-plane wrote over it, gets the resources sent again.
func TestDeltaWildcardRecord(t *testing.T) {
	reg := newTypeRegistry()
	_, snap1 := manyClusters(t, 50, "")
	_, snap2 := manyClusters(t, 50, "cluster-007")
	typ := func(snap *cachev3.Snapshot) *encodedType {
		e, err := newEncodedSnapshot(snap, reg).typ(resource.EndpointType)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	t1, t2 := typ(snap1), typ(snap2)
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType}
	sub := stream.NewDeltaSubscription(nil, nil, nil, true) // legacy wildcard
	first := newDeltaResponse(req, &sub, t1, reg)
	if n := len(first.GetNextVersionMap()); n != 1 {
		t.Fatalf("a wildcard stream's map holds %d entries for 50 resources; want 1", n)
	}
	if got := len(deltaNames(mustDelta(t, first))); got != 50 {
		t.Fatalf("first response: %d resources; want 50", got)
	}

	acked := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: "1"}
	tests := []struct {
		name     string
		returned map[string]string
		typ      *encodedType
		want     int // resources sent; -1: no response
	}{
		{"the same type", first.GetNextVersionMap(), t1, -1},
		{"one resource changed", first.GetNextVersionMap(), t2, 1},
		{"a record the cache forgot", map[string]string{deltaWildcardKey: "unknown"}, t2, 50},
		{"an override to send one again", map[string]string{deltaWildcardKey: t1.id, "cluster-003": ""}, t1, 1},
		{"a change and an override", map[string]string{deltaWildcardKey: t1.id, "cluster-003": ""}, t2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := stream.NewDeltaSubscription(nil, nil, tt.returned, true)
			resp := newDeltaResponse(acked, &sub, tt.typ, reg)
			if tt.want < 0 {
				if resp != nil {
					t.Fatalf("a response of %d resources; want none", len(deltaNames(mustDelta(t, resp))))
				}
				return
			}
			if resp == nil {
				t.Fatalf("no response; want %d resources", tt.want)
			}
			if got := len(deltaNames(mustDelta(t, resp))); got != tt.want {
				t.Errorf("%d resources; want %d", got, tt.want)
			}
			if n := len(resp.GetNextVersionMap()); n != 1 {
				t.Errorf("next map holds %d entries; want 1", n)
			}
		})
	}

	// On a real stream: a wildcard stream that subscribes to a name, then
	// unsubscribes from it, gets it again (go-control-plane's override).
	s, addr := startServer(t)
	v1, _ := manyClusters(t, 5, "")
	_, snapSmall := manyClusters(t, 5, "")
	if err := s.SetSnapshot(t.Context(), "w", v1, snapSmall); err != nil {
		t.Fatal(err)
	}
	c := connectDelta(t, addr, workload("w").Node())
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	resp := c.recv(t)
	c.ack(t, resp)
	nonce := resp.GetNonce() // what Envoy sends with later requests
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: nonce, ResourceNamesSubscribe: []string{"cluster-002"}})
	c.send(t, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: nonce, ResourceNamesUnsubscribe: []string{"cluster-002"}})
	resp = c.recv(t)
	if got := fmt.Sprint(deltaNames(resp)); got != "[cluster-002]" {
		t.Errorf("after unsubscribing an explicit name on a wildcard stream: %s; want [cluster-002]", got)
	}
}

// mustDelta returns resp's message as a client decodes it (the resources
// travel as the message's unknown fields until then).
func mustDelta(t *testing.T, resp *deltaResponse) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	m, err := resp.GetDeltaDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := &discoveryv3.DeltaDiscoveryResponse{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

package xds

import (
	"fmt"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testres "github.com/envoyproxy/go-control-plane/pkg/test/resource/v3"
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
		e, err := newEncodedSnapshot(snap).typ(resource.EndpointType)
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

package xds

import (
	"fmt"
	"slices"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestSotwReturnedRecord checks that a SotW response records what it
// returned in one entry whatever the number of resources, for a wildcard
// and a named subscription.
func TestSotwReturnedRecord(t *testing.T) {
	_, snap := manyClusters(t, 200, "")
	e := newEncodedSnapshot(snap, nil)
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType} {
		typ, err := e.typ(typeURL)
		if err != nil {
			t.Fatal(err)
		}
		resp := newSotwResponse(&cachev3.Request{TypeUrl: typeURL}, nil, typ)
		if got := len(resp.GetReturnedResources()); got != 1 {
			t.Errorf("%s: %d returned entries for 200 resources; want 1", typeURL, got)
		}
	}
}

// TestSotwNamesChange drives a SotW stream through the cases the returned
// record must tell apart, on real streams: a request that names what the
// stream has gets no answer (the next response received is the next
// snapshot's), one that adds a name gets the new set at once, one that
// drops a name gets the smaller set, and a wildcard stream stays quiet
// while its type does not change.
func TestSotwNamesChange(t *testing.T) {
	s, addr := startServer(t)
	v1, snap1 := manyClusters(t, 20, "")
	v2, snap2 := manyClusters(t, 20, "cluster-003")
	if err := s.SetSnapshot(t.Context(), "n", v1, snap1); err != nil {
		t.Fatal(err)
	}
	c := connectADS(t, addr, workload("n").Node())
	c.subscribe(t, resource.ClusterType)
	c.subscribe(t, resource.EndpointType, "cluster-003", "cluster-001")
	got := c.recvAndAck(t, 2)
	if n := len(got[resource.ClusterType].GetResources()); n != 20 {
		t.Fatalf("wildcard CDS: %d clusters; want 20", n)
	}
	wantNames(t, got[resource.EndpointType], "cluster-001", "cluster-003")

	steps := []struct {
		name  string
		names []string
	}{
		{"a name added, before the first", []string{"cluster-000", "cluster-001", "cluster-003"}},
		{"a name added, after the last", []string{"cluster-000", "cluster-001", "cluster-003", "cluster-019"}},
		{"a name dropped", []string{"cluster-001", "cluster-003", "cluster-019"}},
		{"a name that does not exist added", []string{"cluster-001", "cluster-003", "cluster-019", "missing"}},
	}
	last := got[resource.EndpointType]
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c.names[resource.EndpointType] = st.names
			c.ack(t, last) // the same version, new names
			if st.names[len(st.names)-1] == "missing" {
				return // nothing new exists: no answer, checked below
			}
			last = c.recv(t)
			if last.GetVersionInfo() != snap1.GetVersion(resource.EndpointType) {
				t.Errorf("version %s; want %s", last.GetVersionInfo(), snap1.GetVersion(resource.EndpointType))
			}
			wantNames(t, last, st.names...)
			c.ack(t, last)
		})
	}

	// Nothing above left a response pending: the next one is v2's (only
	// the endpoints changed; the wildcard CDS stream stays quiet).
	if err := s.SetSnapshot(t.Context(), "n", v2, snap2); err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	if resp.GetTypeUrl() != resource.EndpointType || resp.GetVersionInfo() != snap2.GetVersion(resource.EndpointType) {
		t.Fatalf("first response after the new snapshot: %s at %s; want endpoints at %s", resp.GetTypeUrl(), resp.GetVersionInfo(), snap2.GetVersion(resource.EndpointType))
	}
	wantNames(t, resp, "cluster-001", "cluster-003", "cluster-019")
}

// wantNames fails unless resp holds exactly the named ClusterLoadAssignments.
func wantNames(t *testing.T, resp *discoveryv3.DiscoveryResponse, want ...string) {
	t.Helper()
	got := resourceNames(t, resp)
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

package adsload

import (
	"hash/maphash"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs the load client speaks.
const (
	typeListeners = resourcev3.ListenerType
	typeClusters  = resourcev3.ClusterType
	typeRoutes    = resourcev3.RouteType
	typeEndpoints = resourcev3.EndpointType
)

// nameCache remembers the route or endpoint names a listener or cluster
// resource references, by its bytes: thousands of simulated proxies get
// the same resources, and decoding each once keeps the load client's CPU
// (on the controller's machine) small.
type nameCache struct {
	seed maphash.Seed
	mu   sync.Mutex // protects m
	m    map[cacheKey][]string
}

// cacheKey identifies a resource by type, size and a hash of its bytes.
type cacheKey struct {
	typ  string
	size int
	hash uint64
}

func newNameCache() *nameCache {
	return &nameCache{seed: maphash.MakeSeed(), m: map[cacheKey][]string{}}
}

// refs returns the names resource r of type typ references: route
// configurations for a listener's HTTP connection managers, the EDS
// service name of an EDS cluster.
func (c *nameCache) refs(typ string, r *anypb.Any) []string {
	key := cacheKey{typ: typ, size: len(r.GetValue()), hash: maphash.Bytes(c.seed, r.GetValue())}
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v
	}
	switch typ {
	case typeListeners:
		v = listenerRoutes(r)
	case typeClusters:
		v = clusterEDS(r)
	}
	c.mu.Lock()
	c.m[key] = v
	c.mu.Unlock()
	return v
}

// listenerRoutes returns the RDS route names of a listener's HTTP
// connection managers.
func listenerRoutes(r *anypb.Any) []string {
	var l listenerv3.Listener
	if err := r.UnmarshalTo(&l); err != nil {
		return nil
	}
	var out []string
	chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.GetTypeUrl() != "type.googleapis.com/"+string(proto.MessageName(&hcmv3.HttpConnectionManager{})) {
				continue
			}
			var h hcmv3.HttpConnectionManager
			if err := tc.UnmarshalTo(&h); err != nil {
				continue
			}
			if n := h.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

// clusterEDS returns an EDS cluster's service name (the cluster's name
// when unset), nothing for other cluster types.
func clusterEDS(r *anypb.Any) []string {
	var c clusterv3.Cluster
	if err := r.UnmarshalTo(&c); err != nil {
		return nil
	}
	if c.GetType() != clusterv3.Cluster_EDS {
		return nil
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return []string{n}
	}
	return []string{c.GetName()}
}

// nameSet is a sorted, deduplicated list of names.
func nameSet(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// equal reports whether two sorted name lists are equal.
func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// diff returns the names in b not in a (added) and in a not in b (removed).
func diff(a, b []string) (added, removed []string) {
	in := func(l []string, n string) bool {
		i := sort.SearchStrings(l, n)
		return i < len(l) && l[i] == n
	}
	for _, n := range b {
		if !in(a, n) {
			added = append(added, n)
		}
	}
	for _, n := range a {
		if !in(b, n) {
			removed = append(removed, n)
		}
	}
	return added, removed
}

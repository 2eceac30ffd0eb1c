package reconciler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/compiler"
)

// typeURL maps a cache response type to its xDS type URL.
func typeURL(t types.ResponseType) string {
	switch t {
	case types.Listener:
		return resource.ListenerType
	case types.Route:
		return resource.RouteType
	case types.Cluster:
		return resource.ClusterType
	case types.Endpoint:
		return resource.EndpointType
	}
	return ""
}

// diffTypes are the resource types a diff reports, in order.
var diffTypes = []types.ResponseType{types.Listener, types.Route, types.Cluster, types.Endpoint}

// Change counts what differs for one resource type.
type Change struct {
	Added, Changed, Removed int
}

// Summary is the difference between two sets of compiled classes, by type
// short name (listeners, routes, clusters, endpoints).
type Summary map[string]*Change

// Empty reports whether nothing changed.
func (s Summary) Empty() bool {
	for _, c := range s {
		if c.Added+c.Changed+c.Removed > 0 {
			return false
		}
	}
	return true
}

// String renders "listeners +1 ~0 -0, routes ..." for types that changed.
func (s Summary) String() string {
	if s.Empty() {
		return "none"
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		c := s[k]
		if c.Added+c.Changed+c.Removed > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d ~%d -%d", k, c.Added, c.Changed, c.Removed))
		}
	}
	return strings.Join(parts, ", ")
}

// diffClasses compares old and new compiled classes resource by resource.
// A class present on one side only counts all its resources as added or
// removed.
func diffClasses(old, new map[string]*compiler.Snapshot) Summary {
	s := Summary{}
	names := map[types.ResponseType]string{types.Listener: "listeners", types.Route: "routes", types.Cluster: "clusters", types.Endpoint: "endpoints"}
	for _, t := range diffTypes {
		c := &Change{}
		s[names[t]] = c
		keys := map[string]bool{}
		for k := range old {
			keys[k] = true
		}
		for k := range new {
			keys[k] = true
		}
		for k := range keys {
			a, b := resourcesOf(old[k], t), resourcesOf(new[k], t)
			for name, ra := range a {
				rb, ok := b[name]
				switch {
				case !ok:
					c.Removed++
				case !proto.Equal(ra, rb):
					c.Changed++
				}
			}
			for name := range b {
				if _, ok := a[name]; !ok {
					c.Added++
				}
			}
		}
	}
	return s
}

func resourcesOf(s *compiler.Snapshot, t types.ResponseType) map[string]types.Resource {
	if s == nil || s.Resources == nil {
		return nil
	}
	return s.Resources.GetResources(typeURL(t))
}

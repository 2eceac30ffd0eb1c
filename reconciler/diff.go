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

// diffTypes are the resource types a diff reports: type URL and short name.
var diffTypes = []struct{ url, name string }{
	{resource.ListenerType, "listeners"},
	{resource.RouteType, "routes"},
	{resource.ClusterType, "clusters"},
	{resource.EndpointType, "endpoints"},
}

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
// removed. A type whose content-hash version is equal on both sides is not
// compared further.
func diffClasses(old, new map[string]*compiler.Snapshot) Summary {
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range new {
		keys[k] = true
	}
	s := Summary{}
	for _, t := range diffTypes {
		c := &Change{}
		s[t.name] = c
		for k := range keys {
			if old[k] != nil && new[k] != nil && old[k].Resources.GetVersion(t.url) == new[k].Resources.GetVersion(t.url) {
				continue
			}
			a, b := resourcesOf(old[k], t.url), resourcesOf(new[k], t.url)
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

func resourcesOf(s *compiler.Snapshot, url string) map[string]types.Resource {
	if s == nil || s.Resources == nil {
		return nil
	}
	return s.Resources.GetResources(url)
}

package reconciler

import (
	"fmt"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// served is a revision that passed every step and is served to some or all
// proxies, with its snapshots compiled per ProxyClass for the current fleet.
// Only the Run goroutine touches classes and fleetKey.
type served struct {
	Revision string
	// Version is the content hash of the revision's policy (policyVersion).
	Version string
	Objects []sources.Object
	Policy  *compiler.Policy
	// reg is the registry Policy was parsed against (Kubernetes mode;
	// nil otherwise). Run goroutine only once served.
	reg registry.Registry
	// jwks are the jwksUri documents Policy was parsed with (see
	// parseWithJWKS). Run goroutine only once served.
	jwks jwksSet

	classes  map[string]*compiler.Snapshot // by ProxyClass key
	fleetKey string                        // the fleet classes were compiled for
}

func newServed(revision string, objs []sources.Object, policy *compiler.Policy) *served {
	return &served{Revision: revision, Version: policyVersion(objs), Objects: objs, Policy: policy, classes: map[string]*compiler.Snapshot{}}
}

// compile makes sure s has a snapshot for every node's class, and for the
// probe class, compiled against fleet. When the part of the fleet the
// policy reads changed (Policy.FleetInputs: sidecars its services select),
// every class is recompiled (only endpoint versions change, so only
// endpoints are re-sent); a node that connects without changing it costs
// no compile unless it brings a new class. The probe class makes a
// revision that does not compile fail before any proxy connects, and lets
// two revisions be compared when no proxy is connected.
func (s *served) compile(nodes []xds.NodeStatus, fleet []nodemeta.Workload, probe nodemeta.ProxyClass) error {
	fleet = s.Policy.FleetInputs(fleet)
	key := fleetKey(fleet)
	var prev map[string]*compiler.Snapshot
	if key != s.fleetKey {
		prev = s.classes
		s.classes, s.fleetKey = map[string]*compiler.Snapshot{}, key
	}
	if pk := probe.Key(); s.classes[pk] == nil {
		snap, err := s.Policy.Compile(probe, fleet)
		if err != nil {
			return fmt.Errorf("compiling %s for a sidecar in namespace %s: %w", s.Revision, probe.Namespace, err)
		}
		s.classes[pk] = same(prev[pk], snap)
	}
	for _, n := range nodes {
		class := n.Workload.Class()
		ck := class.Key()
		if s.classes[ck] != nil {
			continue
		}
		snap, err := s.Policy.Compile(class, fleet)
		if err != nil {
			return fmt.Errorf("compiling %s for proxy %s (%s/%s): %w", s.Revision, n.Workload.ID, class.Namespace, class.Service, err)
		}
		s.classes[ck] = same(prev[ck], snap)
	}
	return nil
}

// same returns prev when snap compiled to the same label (the fleet
// change did not touch the class), else snap. Keeping the earlier pointer
// keeps one snapshot per class: the xds server marshals a snapshot once
// and shares it among the nodes given the same pointer, so a class whose
// nodes held equal copies would be encoded and held once per copy.
func same(prev, snap *compiler.Snapshot) *compiler.Snapshot {
	if prev != nil && snapshotLabel(prev) == snapshotLabel(snap) {
		return prev
	}
	return snap
}

// snapshot returns the compiled snapshot for the node's class (nil when
// compile has not run for it).
func (s *served) snapshot(n xds.NodeStatus) *compiler.Snapshot {
	return s.classes[n.Workload.Class().Key()]
}

// label returns the version label node n gets from s ("" when not compiled).
func (s *served) label(n xds.NodeStatus) string {
	if snap := s.snapshot(n); snap != nil {
		return snapshotLabel(snap)
	}
	return ""
}

// diffServed compares what a and b compiled for the same fleet.
func diffServed(a, b *served) Summary {
	return diffClasses(a.classes, b.classes)
}

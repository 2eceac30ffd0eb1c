package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/xds"
)

// syncFleet gives every connected node the live policy compiled for its
// class. It runs when the fleet changes: a new node gets its snapshot, and
// when workloads join or leave, classes are recompiled (only endpoint
// versions change, so only endpoints are re-sent).
func (r *Reconciler) syncFleet(ctx context.Context) {
	nodes := connected(r.cfg.Fleet.Nodes())
	fleet := workloads(nodes)
	key := fleetKey(fleet)

	r.mu.Lock()
	live, classes, same := r.live, r.classes, key == r.fleetKey
	r.mu.Unlock()
	if live == nil {
		return // nothing good to serve yet
	}
	if !same || !hasAll(classes, nodes) {
		var err error
		if classes, err = compileClasses(live.Policy, nodes, fleet); err != nil {
			// The live policy compiled before; this is a compiler gap for
			// a new class. Keep serving what each node has.
			r.log.Error("compiling live policy for fleet", "revision", live.Revision, "error", err)
			return
		}
		r.mu.Lock()
		if r.live == live {
			r.classes, r.fleetKey = classes, key
		}
		r.mu.Unlock()
	}
	r.assign(ctx, nodes, classes)
}

// assign sets each node's snapshot from classes, skipping nodes that already
// have it.
func (r *Reconciler) assign(ctx context.Context, nodes []xds.NodeStatus, classes map[string]*compiler.Snapshot) {
	for _, n := range nodes {
		snap := classes[n.Workload.Class().Key()]
		if snap == nil {
			continue
		}
		label := snapshotLabel(snap)
		if n.Assigned == label {
			continue
		}
		if err := r.cfg.Fleet.SetSnapshot(ctx, n.Workload.ID, label, snap.Resources); err != nil {
			r.log.Error("assigning snapshot", "node", n.Workload.ID, "version", label, "error", err)
			continue
		}
		r.log.Debug("assigned snapshot", "node", n.Workload.ID, "version", label)
	}
}

// compileClasses compiles policy once per distinct ProxyClass among nodes.
func compileClasses(policy *compiler.Policy, nodes []xds.NodeStatus, fleet []nodemeta.Workload) (map[string]*compiler.Snapshot, error) {
	out := map[string]*compiler.Snapshot{}
	for _, n := range nodes {
		class := n.Workload.Class()
		key := class.Key()
		if _, ok := out[key]; ok {
			continue
		}
		snap, err := policy.Compile(class, fleet)
		if err != nil {
			return nil, fmt.Errorf("compiling for proxy %s (%s/%s): %w", n.Workload.ID, class.Namespace, class.Service, err)
		}
		out[key] = snap
	}
	return out, nil
}

// hasAll reports whether classes has a snapshot for every node's class.
func hasAll(classes map[string]*compiler.Snapshot, nodes []xds.NodeStatus) bool {
	for _, n := range nodes {
		if classes[n.Workload.Class().Key()] == nil {
			return false
		}
	}
	return true
}

// snapshotLabel is the version label a node is assigned: the policy-derived
// Version, then the endpoints' version, so a node that runs the newest
// endpoints is told apart from one that does not.
func snapshotLabel(s *compiler.Snapshot) string {
	eds := s.Resources.GetVersion(typeURL(types.Endpoint))
	if len(eds) > 8 {
		eds = eds[:8]
	}
	if eds == "" {
		return s.Version
	}
	return s.Version + "." + eds
}

// PolicyVersionOf returns the policy part of a node's version label.
func PolicyVersionOf(label string) string {
	for i := 0; i < len(label); i++ {
		if label[i] == '.' {
			return label[:i]
		}
	}
	return label
}

// connected filters nodes to the connected ones.
func connected(nodes []xds.NodeStatus) []xds.NodeStatus {
	out := nodes[:0:0]
	for _, n := range nodes {
		if n.Connected {
			out = append(out, n)
		}
	}
	return out
}

// workloads returns the nodes' workloads sorted by id.
func workloads(nodes []xds.NodeStatus) []nodemeta.Workload {
	out := make([]nodemeta.Workload, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Workload)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// fleetKey identifies a set of workloads: equal keys compile equally.
func fleetKey(fleet []nodemeta.Workload) string {
	h := sha256.New()
	for _, w := range fleet {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", w.ID, w.Class().Key(), w.Admin)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// probeClass is a sidecar class used to compile a revision when no proxy is
// connected, so that compile errors surface before the first proxy joins.
func probeClass(ns string) nodemeta.ProxyClass {
	return nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: ns, Service: "gitmesh-probe", Outbound: "127.0.0.1:15001"}
}

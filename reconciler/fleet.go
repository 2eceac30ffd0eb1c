package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/pace"
	"github.com/gitmesh/gitmesh/xds"
)

// syncFleet gives every connected node what it should run: the canary
// revision when the node is in the in-flight rollout's updated set, else
// the stable one. It runs whenever the fleet changes, after every rollout
// step, and after every reconcile; nodes that already have their snapshot
// are skipped.
func (r *Reconciler) syncFleet(ctx context.Context) {
	nodes := connected(r.cfg.Fleet.Nodes())
	fleet := workloads(nodes)
	r.mu.Lock()
	stable, ro := r.stable, r.rollout
	r.mu.Unlock()
	if stable == nil {
		return // nothing good to serve yet
	}
	r.refreshRegistry(stable)
	if ro != nil {
		r.refreshRegistry(ro.Canary)
	}
	if err := stable.compile(nodes, fleet, r.probe()); err != nil {
		// The stable revision compiled before; this is a compiler gap for
		// a new class. Keep serving what each node has.
		r.log.Error("compiling stable revision for fleet", "revision", stable.Revision, "error", err)
		return
	}
	var canary *served
	if ro != nil && ro.Canary != nil {
		canary = ro.Canary
		if err := canary.compile(nodes, fleet, r.probe()); err != nil {
			r.log.Error("compiling canary revision for fleet", "revision", canary.Revision, "error", err)
			canary = nil
		}
	}
	for _, n := range nodes {
		s := stable
		if canary != nil && ro.isUpdated(n.Workload.ID) {
			s = canary
		}
		r.assignNode(ctx, n, s)
	}
}

// assignNode sets node n's snapshot from s unless it already has it.
func (r *Reconciler) assignNode(ctx context.Context, n xds.NodeStatus, s *served) {
	snap := s.snapshot(n)
	if snap == nil {
		return
	}
	label := snapshotLabel(snap)
	r.mu.Lock()
	r.assigned[n.Workload.ID] = s.Revision
	r.mu.Unlock()
	if n.Assigned == label {
		return
	}
	if err := r.cfg.Fleet.SetSnapshot(ctx, n.Workload.ID, label, snap.Resources); err != nil {
		r.log.Error("assigning snapshot", "node_id", n.Workload.ID, "version", label, "error", err)
		return
	}
	r.log.Debug("assigned snapshot", "node_id", n.Workload.ID, "revision", s.Revision, "version", label)
}

// snapshotLabel is the version label a node is assigned: the policy-derived
// Version, then the endpoints' version, so a node that runs the newest
// endpoints is told apart from one that does not.
func snapshotLabel(s *compiler.Snapshot) string {
	eds := s.Resources.GetVersion(resource.EndpointType)
	if len(eds) > 8 {
		eds = eds[:8]
	}
	if eds == "" {
		return s.Version
	}
	return s.Version + "." + eds
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

// fleetKey identifies a set of workloads: equal keys compile equally. It
// hashes every field of each workload (the compiler reads addresses, pod
// and instance IPs besides the class).
func fleetKey(fleet []nodemeta.Workload) string {
	h := sha256.New()
	enc := json.NewEncoder(h) // maps are written sorted
	for _, w := range fleet {
		if err := enc.Encode(w); err != nil {
			// A Workload is strings, slices and maps of strings: it
			// always encodes. Should it not, never match a key.
			fmt.Fprintf(h, "%p", &w)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// probe is a sidecar class in the default namespace that every revision is
// compiled for besides the connected proxies' classes (see served.compile).
func (r *Reconciler) probe() nodemeta.ProxyClass {
	return nodemeta.SidecarClass(r.cfg.DefaultNamespace, "")
}

// Fleet changes are paced (package pace): the xds server signals Changed
// on every connect, disconnect, ACK and NACK, and a push to thousands of
// proxies brings thousands of ACKs within a second. Reacting to each
// (syncFleet reads every node, then the rollout steps) would keep the loop
// busy with the same fleet again and again while the streams wait for
// CPU; paced, the reactions take at most a third of a core, and a signal
// waits at most fleetPaceMax.
const (
	fleetPaceFactor = 2
	fleetPaceMax    = 100 * time.Millisecond
)

// newFleetPacer returns the Run loop's pacer of fleet changes.
func newFleetPacer() *pace.Pacer {
	return &pace.Pacer{Factor: fleetPaceFactor, Max: fleetPaceMax}
}

// fleetChanged is the loop's reaction to a fleet change: re-assign
// snapshots, then step the rollout, whose gates read the fleet's ACKs.
func (r *Reconciler) fleetChanged(ctx context.Context, p *pace.Pacer) {
	start := time.Now()
	r.syncFleet(ctx)
	r.stepRollout(ctx)
	r.checkRollbackDone()
	p.Reacted(start, time.Now())
}

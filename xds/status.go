package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// SyncState says whether a node runs the version assigned to it.
type SyncState string

// Sync states, as `gitmesh status` prints them.
const (
	// StateSynced: the node ACKed every resource type of its assigned version.
	StateSynced SyncState = "SYNCED"
	// StateStale: the node does not (yet) run its assigned version, or has
	// none assigned.
	StateStale SyncState = "STALE"
	// StateNacked: the node rejected its assigned version (see NodeStatus.NACK).
	StateNacked SyncState = "NACKED"
)

// historyDepth is how many assigned version labels a node remembers to map
// ACKed per-type versions back to a label. The label the node runs is kept
// beyond this depth.
const historyDepth = 8

// NodeStatus is what the server knows about one node.
type NodeStatus struct {
	// Workload is what the node announced in its metadata (nodemeta.FromNode).
	// For a node assigned a snapshot before it ever connected, only ID is set.
	Workload nodemeta.Workload
	// Connected is true while the node has at least one open stream.
	Connected bool
	// ConnectedAt is when the node's current connection opened (its first
	// open stream); zero if it never connected.
	ConnectedAt time.Time
	// LastSeen is when the node last sent a request.
	LastSeen time.Time
	// Assigned is the version label last given to SetSnapshot for this
	// node; "" if none (or cleared).
	Assigned string
	// Acked is the version label the node runs: the most recently assigned
	// of the node's last few labels whose every resource type is satisfied,
	// "" if none is (e.g. mid-update, when the node runs a mix of two
	// labels). A type of a label is satisfied when
	//   - the node ACKed (or, reconnecting, reported in version_info) that
	//     type at the label's version of it; or
	//   - the label holds no resource of that type and the node was never
	//     sent that type at that version: a sidecar with no EDS cluster does
	//     not subscribe to EDS, and an empty type leaves nothing to apply.
	//     Once sent, an empty type counts only when ACKed.
	// Per-type versions are compared, so two labels that share a type's
	// version share its ACK: an endpoint-only change needs only the EDS ACK.
	Acked string
	// NACK is the last NACK of the Assigned version, nil if none. It clears
	// when another version is assigned or the node comes to run Assigned.
	NACK *NACK
	// State is StateSynced when Assigned != "" and Acked == Assigned,
	// StateNacked when NACK != nil, else StateStale.
	State SyncState
	// Types holds the per resource type versions, keyed by type URL;
	// secrets are in Secrets, not here.
	Types map[string]TypeStatus
	// Secrets is the node's SDS state (SetSecrets).
	Secrets SecretsStatus
}

// NACK is a node's rejection of a version.
type NACK struct {
	// Version is the rejected version label.
	Version string
	// TypeURL is the rejected resource type.
	TypeURL string
	// Error is the error_detail message the node sent.
	Error string
	// At is when the NACK arrived.
	At time.Time
}

// TypeStatus is one resource type's versions on one node. The versions are
// per-type versions of the snapshot (Snapshot.GetVersion), not labels.
type TypeStatus struct {
	// Sent is the version last sent to the node.
	Sent string
	// Acked is the version the node last ACKed (it runs this one).
	Acked string
	// Nacked is the version the node last NACKed, "" if none.
	Nacked string
	// Error is the error_detail message of the last NACK.
	Error string
}

// Nodes returns every known node, sorted by id: connected nodes, nodes
// within their grace period after disconnecting, and nodes assigned a
// snapshot that have not connected yet.
func (s *Server) Nodes() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.nodes))
	out := make([]NodeStatus, len(ids))
	for i, id := range ids {
		out[i] = s.nodes[id].status()
	}
	return out
}

// Node returns one node's status, and false if the node is not known.
func (s *Server) Node(id string) (NodeStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[id]
	if !ok {
		return NodeStatus{}, false
	}
	return n.status(), true
}

// node is the server's record of one node. Server.mu guards it.
type node struct {
	workload       nodemeta.Workload
	streams        int // open streams
	connectedAt    time.Time
	lastSeen       time.Time
	disconnectedAt time.Time // or when the record was created, if never connected

	assigned string
	// assignedAt is when assigned was given, until the node runs it (zero
	// then): the start of gitmesh_xds_proxy_convergence_seconds.
	assignedAt time.Time
	history    []assignment // oldest first
	acked      string
	nack       *NACK
	types      map[string]*TypeStatus
	secrets    SecretsStatus
}

// assignment is one version label with its per-type versions.
type assignment struct {
	label string
	types map[string]typeVersion // by type URL; types never served are absent
}

// typeVersion is one type's version in an assignment.
type typeVersion struct {
	version string
	empty   bool // the type holds no resources
}

// newAssignment records snap's per-type versions under label.
func newAssignment(label string, snap *cachev3.Snapshot) (assignment, error) {
	a := assignment{label: label, types: map[string]typeVersion{}}
	for i, res := range snap.Resources {
		if res.Version == "" && len(res.Items) == 0 {
			continue // the cache never answers a type without a version
		}
		typeURL, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			return assignment{}, err
		}
		if typeURL == resource.SecretType {
			return assignment{}, errors.New("the snapshot holds secrets: secrets travel through SetSecrets")
		}
		if res.Version == "" {
			return assignment{}, fmt.Errorf("resource type %s holds %d resources but no version", typeURL, len(res.Items))
		}
		a.types[typeURL] = typeVersion{version: res.Version, empty: len(res.Items) == 0}
	}
	return a, nil
}

func newNode(w nodemeta.Workload, now time.Time) *node {
	return &node{workload: w, disconnectedAt: now, types: map[string]*TypeStatus{}}
}

// assign makes a the node's assignment, newest in its history.
func (n *node) assign(a assignment) {
	if n.assigned != a.label {
		n.nack = nil // it was a NACK of the previous assignment
		n.assignedAt = time.Now()
	}
	n.assigned = a.label
	n.history = slices.DeleteFunc(n.history, func(h assignment) bool { return h.label == a.label })
	n.history = append(n.history, a)
	for len(n.history) > historyDepth {
		i := 0
		if n.history[0].label == n.acked {
			i = 1 // keep the label the node runs
		}
		n.history = slices.Delete(n.history, i, i+1)
	}
	n.recompute()
}

// clear drops the node's assignment and history; what it ACKed per type stays.
func (n *node) clear() {
	n.assigned, n.history, n.acked, n.nack = "", nil, "", nil
}

// find returns the assignment with label, nil if not in the history.
func (n *node) find(label string) *assignment {
	for i := range n.history {
		if n.history[i].label == label {
			return &n.history[i]
		}
	}
	return nil
}

// typeStatus returns the node's status of typeURL, creating it. Secrets
// have their own, outside the config types.
func (n *node) typeStatus(typeURL string) *TypeStatus {
	if typeURL == resource.SecretType {
		return &n.secrets.TypeStatus
	}
	ts := n.types[typeURL]
	if ts == nil {
		ts = &TypeStatus{}
		n.types[typeURL] = ts
	}
	return ts
}

// satisfies reports whether the node runs every type of a; see
// NodeStatus.Acked for the rule.
func (n *node) satisfies(a assignment) bool {
	for typeURL, tv := range a.types {
		ts := n.types[typeURL]
		if ts != nil && ts.Acked == tv.version {
			continue
		}
		if tv.empty && (ts == nil || ts.Sent != tv.version) {
			continue
		}
		return false
	}
	return true
}

// recompute derives acked from the per-type state and clears a NACK the
// node has since got over.
func (n *node) recompute() {
	n.acked = ""
	for i := len(n.history) - 1; i >= 0; i-- {
		if n.satisfies(n.history[i]) {
			n.acked = n.history[i].label
			break
		}
	}
	if n.assigned != "" && n.acked == n.assigned {
		n.nack = nil
	}
}

// summary is the part of a node's status whose change signals Changed.
type summary struct {
	connected bool
	acked     string
	state     SyncState
	nack      *NACK
}

func (n *node) summary() summary {
	return summary{connected: n.streams > 0, acked: n.acked, state: n.state(), nack: n.nack}
}

// state derives the node's SyncState.
func (n *node) state() SyncState {
	switch {
	case n.assigned != "" && n.acked == n.assigned:
		return StateSynced
	case n.nack != nil:
		return StateNacked
	default:
		return StateStale
	}
}

// status returns a copy of the node's status.
func (n *node) status() NodeStatus {
	w := n.workload
	w.Labels = maps.Clone(w.Labels)
	w.Gateway = slices.Clone(w.Gateway)
	st := NodeStatus{
		Workload:    w,
		Connected:   n.streams > 0,
		ConnectedAt: n.connectedAt,
		LastSeen:    n.lastSeen,
		Assigned:    n.assigned,
		Acked:       n.acked,
		State:       n.state(),
		Types:       make(map[string]TypeStatus, len(n.types)),
		Secrets:     n.secrets,
	}
	st.Secrets.Names = slices.Clone(n.secrets.Names)
	if n.nack != nil {
		nack := *n.nack
		st.NACK = &nack
	}
	for k, v := range n.types {
		st.Types[k] = *v
	}
	return st
}

package sds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/xds"
)

// Errors of Rotate and Prune.
var (
	// ErrOperatorRoot: the root was supplied by the operator (--ca-cert),
	// who rotates it by replacing the files (docs/security.md).
	ErrOperatorRoot = errors.New("the CA root is operator-supplied (--ca-cert/--ca-key): rotate it by replacing the files, see docs/security.md")
	// ErrOldRootInUse: a connected proxy still holds a certificate of a
	// root Prune would drop.
	ErrOldRootInUse = errors.New("connected proxies still hold certificates of an earlier root")
	// ErrNothingToPrune: the bundle holds the signing root only.
	ErrNothingToPrune = errors.New("the trust bundle holds the signing root only: nothing to prune")
)

// ackPoll is how often a rotation phase re-reads the fleet while it waits.
const ackPoll = 20 * time.Millisecond

// Rotate replaces the CA's root with a new one, in two phases, and
// persists it:
//
//  1. the trust bundle becomes new root + old roots and is pushed as
//     ROOTCA to every node with the certificate it already has; Rotate
//     waits (at most the ACK timeout) until each connected node that
//     takes secrets ACKed it, so every peer trusts the new root before
//     any certificate of it is presented;
//  2. every certificate is reissued from the new root, and Rotate waits
//     for those ACKs the same way.
//
// A node that connects during phase 1 is issued from the new root at once.
// Earlier roots stay trusted until Prune. It returns which nodes ACKed
// each phase in time.
func (m *Manager) Rotate(ctx context.Context) (admin.CAResponse, error) {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	if m.store == nil {
		return admin.CAResponse{}, ErrOperatorRoot
	}
	old := m.Authority()
	next, err := ca.New(old.TrustDomain(), old.Material(), ca.WithClock(m.now))
	if err != nil {
		return admin.CAResponse{}, fmt.Errorf("rotating CA root: %w", err)
	}
	mat, err := next.Rotate(ca.DefaultRootValidity)
	if err != nil {
		return admin.CAResponse{}, fmt.Errorf("rotating CA root: %w", err)
	}
	if err := m.store.Save(ctx, mat); err != nil {
		return admin.CAResponse{}, fmt.Errorf("rotating CA root: persisting the new root: %w", err)
	}
	m.mu.Lock()
	m.auth, m.hold = next, true
	m.mu.Unlock()
	m.log.Info("rotating CA root: phase 1, distributing the new trust bundle", "root_fingerprint", fingerprint(next.Root().Raw),
		"trusted_roots", next.Roots())
	m.wake()
	bundle := next.Bundle()
	acked, pending := m.waitFleet(ctx, func(nc *nodeCert) bool { return bytes.Equal(nc.bundle, bundle) })

	m.mu.Lock()
	m.hold = false
	m.mu.Unlock()
	m.log.Info("rotating CA root: phase 2, reissuing workload certificates", "bundle_acked", len(acked), "bundle_pending", pending)
	m.wake()
	reissued, repending := m.waitFleet(ctx, func(nc *nodeCert) bool { return next.IssuedByRoot(nc.leaf) })

	res := admin.CAResponse{Status: m.Status(), BundleAcked: acked, BundlePending: pending, Reissued: reissued, ReissuePending: repending}
	res.Message = fmt.Sprintf("rotated the CA root to %s: %d proxies ACKed the new bundle (%d pending), %d reissued (%d pending); run 'gitmesh ca prune' once no proxy holds a certificate of the old root",
		res.Status.RootFingerprint, len(acked), len(pending), len(reissued), len(repending))
	m.log.Info("rotated CA root", "root_fingerprint", res.Status.RootFingerprint, "reissued", len(reissued), "reissue_pending", repending)
	return res, nil
}

// waitFleet waits until every connected node that takes secrets has ACKed
// secrets for which done holds, or the ACK timeout passes, and returns the
// nodes that did and those that did not, sorted.
func (m *Manager) waitFleet(ctx context.Context, done func(*nodeCert) bool) (acked, pending []string) {
	deadline := time.NewTimer(m.ackTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(ackPoll)
	defer tick.Stop()
	for {
		acked, pending = m.fleetState(done)
		if len(pending) == 0 {
			return acked, nil
		}
		select {
		case <-ctx.Done():
			return acked, pending
		case <-deadline.C:
			return acked, pending
		case <-tick.C:
		}
	}
}

// fleetState sorts the connected nodes that take secrets into those that
// ACKed secrets for which done holds and the others.
func (m *Manager) fleetState(done func(*nodeCert) bool) (acked, pending []string) {
	nodes := m.fleet.Nodes()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range nodes {
		if !n.Connected || !takesSecrets(n) {
			continue
		}
		nc := m.nodes[n.Workload.ID]
		if nc != nil && nc.version != "" && n.Secrets.Acked == nc.version && done(nc) {
			acked = append(acked, n.Workload.ID)
		} else {
			pending = append(pending, n.Workload.ID)
		}
	}
	return acked, pending
}

// takesSecrets reports whether a node subscribes to secrets (a proxy
// without mTLS, or a proxyless client, never asks for any).
func takesSecrets(n xds.NodeStatus) bool {
	return n.Secrets.Sent != "" || n.Secrets.Acked != "" || n.Secrets.Nacked != ""
}

// Prune stops trusting every root but the signing one, persists that and
// pushes the smaller bundle to every node. While a connected node holds a
// certificate of an earlier root it returns ErrOldRootInUse, unless force.
func (m *Manager) Prune(ctx context.Context, force bool) (admin.CAResponse, error) {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	if m.store == nil {
		return admin.CAResponse{}, ErrOperatorRoot
	}
	cur := m.Authority()
	if cur.Roots() < 2 {
		return admin.CAResponse{}, ErrNothingToPrune
	}
	if old := m.Status().OldRootWorkloads; len(old) > 0 && !force {
		return admin.CAResponse{}, fmt.Errorf("pruning CA roots: %w: %s (wait for their reissue, or --force)", ErrOldRootInUse, strings.Join(old, ", "))
	}
	next, err := ca.New(cur.TrustDomain(), cur.Material(), ca.WithClock(m.now))
	if err != nil {
		return admin.CAResponse{}, fmt.Errorf("pruning CA roots: %w", err)
	}
	mat := next.Prune()
	if err := m.store.Save(ctx, mat); err != nil {
		return admin.CAResponse{}, fmt.Errorf("pruning CA roots: persisting: %w", err)
	}
	m.mu.Lock()
	m.auth = next
	m.mu.Unlock()
	m.wake()
	st := m.Status()
	m.log.Info("pruned CA roots", "root_fingerprint", st.RootFingerprint, "forced", force)
	return admin.CAResponse{Status: st, Message: fmt.Sprintf("pruned the trust bundle to the signing root %s", st.RootFingerprint)}, nil
}

// Status describes the CA and the certificates the Manager gave the
// connected nodes.
func (m *Manager) Status() admin.CAStatus {
	nodes := map[string]xds.NodeStatus{}
	for _, n := range m.fleet.Nodes() {
		nodes[n.Workload.ID] = n
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	root := m.auth.Root()
	st := admin.CAStatus{
		TrustDomain:      m.auth.TrustDomain(),
		RootFingerprint:  fingerprint(root.Raw),
		RootSubject:      root.Subject.String(),
		RootNotAfter:     root.NotAfter.UTC(),
		TrustedRoots:     m.auth.Roots(),
		OperatorSupplied: m.store == nil,
		Workloads:        len(m.nodes),
	}
	for id, nc := range m.nodes {
		if st.NextExpiry.IsZero() || nc.leaf.NotAfter.Before(st.NextExpiry) {
			st.NextExpiry = nc.leaf.NotAfter.UTC()
		}
		if n := nodes[id]; n.Connected && m.holdsOldRoot(n, nc) {
			st.OldRootWorkloads = append(st.OldRootWorkloads, id)
		}
	}
	slices.Sort(st.OldRootWorkloads)
	return st
}

// holdsOldRoot reports whether a node may still present a certificate of
// an earlier root: the one it was given, or, until it ACKs that, the one
// it had before. m.mu must be held.
func (m *Manager) holdsOldRoot(n xds.NodeStatus, nc *nodeCert) bool {
	if !m.auth.IssuedByRoot(nc.leaf) {
		return true
	}
	pending := nc.version == "" || (takesSecrets(n) && n.Secrets.Acked != nc.version)
	return pending && nc.prevLeaf != nil && !m.auth.IssuedByRoot(nc.prevLeaf)
}

// fingerprint is the hex SHA-256 of a certificate's DER.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Package sds is the controller's certificate manager: it issues every
// connected proxy its workload certificate (SPIFFE id
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>) from the
// mesh CA (package ca), delivers it with the trusted roots as the SDS
// secrets "default" and "ROOTCA" (the names Istio uses) through the xDS
// server, renews it before it expires, and rotates the CA's root in two
// phases (rotate.go).
//
// The Manager runs its own goroutine beside the reconciler, never on its
// loop: it reads the fleet from the xDS server (Nodes, Subscribe) and the
// identity of a node from what admission bound the node's stream to
// (NodeStatus.Workload: namespace and service account), so an
// authenticated admission decides which identity a node gets.
package sds

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/pace"
	"github.com/gitmesh/gitmesh/xds"
)

// Defaults, as Istio's node agent.
const (
	// DefaultGraceRatio is the share of a certificate's lifetime left when
	// it is renewed (Istio's SECRET_GRACE_PERIOD_RATIO).
	DefaultGraceRatio = 0.5
	// DefaultGraceJitter randomizes the ratio by up to this much either
	// way, so certificates issued together are not renewed together
	// (Istio's SECRET_GRACE_PERIOD_RATIO_JITTER).
	DefaultGraceJitter = 0.01
	// DefaultAckTimeout bounds each phase of a root rotation's wait for
	// the fleet's ACKs.
	DefaultAckTimeout = 30 * time.Second
	// retryInterval is how soon a failed issue or push is retried.
	retryInterval = 5 * time.Second
)

// Fleet is what the Manager needs of the xDS server.
type Fleet interface {
	// Nodes returns every known node with its workload and secrets state.
	Nodes() []xds.NodeStatus
	// Subscribe returns a channel signalled when the fleet changes.
	Subscribe() <-chan struct{}
	// SetSecrets gives a node its secrets and returns their version.
	SetSecrets(ctx context.Context, nodeID string, secrets []*tlsv3.Secret) (string, error)
}

var _ Fleet = (*xds.Server)(nil)

// RootStore persists the CA's root where the controller keeps it (a state
// directory, a Kubernetes Secret).
type RootStore interface {
	// Save replaces the persisted root with m.
	Save(ctx context.Context, m ca.Material) error
}

// Manager issues, delivers and renews workload certificates. Create it
// with New and run it with Run; Rotate, Prune and Status are safe to call
// concurrently with Run.
type Manager struct {
	fleet      Fleet
	store      RootStore // nil: the root is operator-supplied
	log        *slog.Logger
	ttl        time.Duration
	ratio      float64
	jitter     float64
	ackTimeout time.Duration
	now        func() time.Time
	rand       func() float64 // in [0, 1)
	changed    <-chan struct{}
	kick       chan struct{}
	metrics    *metrics

	// rotMu serializes Rotate and Prune.
	rotMu sync.Mutex

	// mu protects auth, hold and nodes.
	mu   sync.Mutex
	auth *ca.Authority
	// hold is set during the first phase of a root rotation: certificates
	// of the previous root are not reissued (and renewals wait) until
	// every node trusts the new root.
	hold  bool
	nodes map[string]*nodeCert
}

// nodeCert is what the Manager gave one node.
type nodeCert struct {
	id       ca.Identity
	leaf     *x509.Certificate
	prevLeaf *x509.Certificate // the one leaf replaced, which the node holds until it ACKs version
	chainPEM []byte
	keyPEM   []byte
	issuedAt time.Time
	rotateAt time.Time
	bundle   []byte // the ROOTCA pushed with it
	version  string // the secrets version SetSecrets returned, "" if not pushed
	// signer is the root leaf was last found signed by (Authority.Root's
	// pointer, new on every rotation), so that a sync checks each leaf's
	// signature once per root rather than on every fleet change.
	signer *x509.Certificate
}

// issuedByRoot reports whether nc's leaf was signed by auth's signing
// root, checking the signature once per root. m.mu must be held.
func (nc *nodeCert) issuedByRoot(auth *ca.Authority) bool {
	root := auth.Root()
	if nc.signer == root {
		return true
	}
	if !auth.IssuedByRoot(nc.leaf) {
		return false
	}
	nc.signer = root
	return true
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the logger. If nil (the default), nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) {
		if l != nil {
			m.log = l
		}
	}
}

// WithCertTTL sets the lifetime of workload certificates. Zero or less
// means ca.DefaultCertTTL (24h).
func WithCertTTL(d time.Duration) Option {
	return func(m *Manager) {
		if d > 0 {
			m.ttl = d
		}
	}
}

// WithRootStore makes root rotation and pruning possible, persisting the
// new root in st. Without it (an operator-supplied root) Rotate and Prune
// return ErrOperatorRoot.
func WithRootStore(st RootStore) Option { return func(m *Manager) { m.store = st } }

// WithAckTimeout bounds each phase of a root rotation's wait for ACKs.
// Zero or less means DefaultAckTimeout.
func WithAckTimeout(d time.Duration) Option {
	return func(m *Manager) {
		if d > 0 {
			m.ackTimeout = d
		}
	}
}

// WithClock sets the clock renewals are scheduled with (tests; give the
// Authority the same one with ca.WithClock). Default time.Now.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithRand sets the source of the renewal jitter, a function returning
// values in [0, 1) (tests). Default math/rand/v2's Float64.
func WithRand(r func() float64) Option { return func(m *Manager) { m.rand = r } }

// New returns a Manager issuing from auth to fleet's nodes. It subscribes
// to fleet at once, so no change between New and Run is missed.
func New(fleet Fleet, auth *ca.Authority, opts ...Option) *Manager {
	m := &Manager{
		fleet: fleet, auth: auth,
		log: slog.New(slog.DiscardHandler), ttl: ca.DefaultCertTTL,
		ratio: DefaultGraceRatio, jitter: DefaultGraceJitter, ackTimeout: DefaultAckTimeout,
		now: time.Now, rand: rand.Float64,
		kick:  make(chan struct{}, 1),
		nodes: map[string]*nodeCert{},
	}
	for _, o := range opts {
		o(m)
	}
	m.changed = fleet.Subscribe()
	m.metrics = newMetrics(m)
	return m
}

// Authority returns the CA the Manager issues from now (a root rotation
// replaces it).
func (m *Manager) Authority() *ca.Authority {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.auth
}

// SetAuthority makes the Manager issue from a (a replica that starts to
// lead re-reads the root its predecessor may have rotated). Certificates
// of a root a no longer trusts are reissued.
func (m *Manager) SetAuthority(a *ca.Authority) {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	m.mu.Lock()
	m.auth = a
	m.mu.Unlock()
	m.wake()
}

// Run issues and renews certificates until ctx is done, then returns nil.
//
// Fleet changes are paced (package pace): the fleet signals every ACK
// too, and a sync reads every node, so during a push's burst of ACKs syncs
// take at most half a core and a new node waits at most fleetPaceMax for
// its certificate. Kicks (a new CA) and renewals are not paced.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	pacer := &pace.Pacer{Factor: fleetPaceFactor, Max: fleetPaceMax}
	for {
		start := time.Now()
		next := m.sync(ctx)
		pacer.Reacted(start, time.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(m.now()), 0))
		}
		if !m.wait(ctx, timer, pacer) {
			return nil
		}
	}
}

// Pacing of fleet signals: see Run.
const (
	fleetPaceFactor = 1
	fleetPaceMax    = 100 * time.Millisecond
)

// wait waits for the next reason to sync and reports false when ctx is
// done.
func (m *Manager) wait(ctx context.Context, timer *time.Timer, pacer *pace.Pacer) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-m.changed:
			if pacer.Signal(time.Now()) {
				return true
			}
		case <-pacer.Pending():
			return true
		case <-m.kick:
			return true
		case <-timer.C:
			return true
		}
	}
}

// wake makes Run sync now.
func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// work is one node's pending issue or push.
type work struct {
	nodeID string
	id     ca.Identity
	issue  bool     // a new certificate, else the same one with a new bundle
	old    nodeCert // what the node has (zero when it has nothing)
}

// sync issues or pushes what every known node lacks, forgets the nodes the
// fleet forgot, and returns when it must run next ("zero": on a change).
func (m *Manager) sync(ctx context.Context) time.Time {
	nodes := m.fleet.Nodes()
	now := m.now()
	m.mu.Lock()
	auth, hold := m.auth, m.hold
	bundle := auth.Bundle()
	known := make(map[string]bool, len(nodes))
	var todo []work
	for _, n := range nodes {
		if n.ConnectedAt.IsZero() {
			continue // assigned a snapshot before it ever connected
		}
		known[n.Workload.ID] = true
		id := ca.WorkloadIdentity(auth.TrustDomain(), n.Workload.Namespace, n.Workload.ServiceAccount) // its admitted identity
		nc := m.nodes[n.Workload.ID]
		w := work{nodeID: n.Workload.ID, id: id}
		if nc != nil {
			w.old = *nc
		}
		switch {
		case nc == nil || nc.id != id || !now.Before(nc.leaf.NotAfter):
			w.issue = true // new, changed identity, or expired: even on hold
		case hold:
			if !bytes.Equal(nc.bundle, bundle) || nc.version == "" {
				todo = append(todo, w)
			}
			continue
		case !now.Before(nc.rotateAt) || !nc.issuedByRoot(auth):
			w.issue = true
		case !bytes.Equal(nc.bundle, bundle) || nc.version == "":
		default:
			continue
		}
		todo = append(todo, w)
	}
	for id := range m.nodes {
		if !known[id] {
			delete(m.nodes, id)
		}
	}
	m.mu.Unlock()

	retry := false
	for _, w := range todo {
		if err := m.apply(ctx, auth, bundle, w); err != nil {
			if ctx.Err() == nil && !errors.Is(err, xds.ErrUnknownNode) {
				m.log.Warn("delivering workload certificate", "node_id", w.nodeID, "spiffe_id", w.id.String(), "error", err)
				retry = true
			}
		}
	}
	return m.nextRun(now, hold, retry)
}

// apply issues (when w.issue) and pushes one node's secrets.
func (m *Manager) apply(ctx context.Context, auth *ca.Authority, bundle []byte, w work) error {
	nc := w.old
	if w.issue {
		cert, err := auth.Issue(ca.Leaf{ID: w.id, TTL: m.ttl})
		if err != nil {
			m.metrics.issueErrors.Inc()
			return err
		}
		m.metrics.issued.Inc()
		issuedAt := m.now()
		nc = nodeCert{id: w.id, leaf: cert.Leaf, prevLeaf: w.old.leaf, chainPEM: cert.ChainPEM, keyPEM: cert.KeyPEM,
			issuedAt: issuedAt, rotateAt: m.rotateAt(issuedAt, cert.Leaf.NotAfter)}
		if root := auth.Root(); len(root.SubjectKeyId) > 0 && bytes.Equal(cert.Leaf.AuthorityKeyId, root.SubjectKeyId) {
			nc.signer = root // just signed by it: no need to check the signature
		}
		m.log.Info("issued workload certificate", "node_id", w.nodeID, "spiffe_id", w.id.String(),
			"serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter, "renew_at", nc.rotateAt)
	}
	nc.bundle = bundle
	nc.version = ""
	version, err := m.fleet.SetSecrets(ctx, w.nodeID, []*tlsv3.Secret{CertificateSecret(nc.chainPEM, nc.keyPEM), RootSecret(bundle)})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		nc.version = version
	}
	// Keep what was issued even when the push failed: the next sync
	// pushes it again rather than issuing another.
	m.nodes[w.nodeID] = &nc
	return err
}

// rotateAt is when a certificate issued at issuedAt and valid until
// notAfter is renewed: once the ratio (plus or minus the jitter) of its
// lifetime is left, as Istio's secret cache schedules it.
func (m *Manager) rotateAt(issuedAt, notAfter time.Time) time.Time {
	life := notAfter.Sub(issuedAt)
	ratio := m.ratio + m.jitter*(2*m.rand()-1)
	ratio = min(max(ratio, 0), 1)
	return issuedAt.Add(time.Duration(float64(life) * (1 - ratio)))
}

// nextRun is the earliest renewal ahead, or a retry soon. On hold, the
// renewals already due wait for the end of the hold, which wakes Run.
func (m *Manager) nextRun(now time.Time, hold, retry bool) time.Time {
	var next time.Time
	if retry {
		next = now.Add(retryInterval)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, nc := range m.nodes {
		at := nc.rotateAt
		if hold && !at.After(now) {
			at = nc.leaf.NotAfter // expired certificates are reissued even on hold
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

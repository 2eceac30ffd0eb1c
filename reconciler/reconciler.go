// Package reconciler runs gitmesh's control loop: it polls a Source for new
// Revisions, builds and compiles them, diffs the result against what is
// live, and assigns snapshots to the fleet through the xds server. It also
// keeps the controller's state (under --state-dir) and serves the admin API.
//
// A failure at any step leaves the live config untouched and is reported as
// a Flux-style Ready condition with a reason (FetchFailed, BuildFailed,
// ValidationFailed, CompileFailed).
package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// Builder builds the policy directory path of a checked-out work tree at
// root into Objects. sources.Build is the production Builder.
type Builder func(root, path string) ([]sources.Object, error)

// Fleet is what the reconciler needs from the xds server: the connected
// nodes, a signal when they change, and per-node snapshot assignment.
// *xds.Server implements it.
type Fleet interface {
	Nodes() []xds.NodeStatus
	Changed() <-chan struct{}
	SetSnapshot(ctx context.Context, nodeID, version string, snap *cachev3.Snapshot) error
}

var _ Fleet = (*xds.Server)(nil)

// Config configures a Reconciler.
type Config struct {
	// Source fetches revisions. Required.
	Source sources.Source
	// Build builds a work tree into Objects. If nil, sources.Build is used.
	Build Builder
	// Path is the policy directory inside the repository ("" is the root).
	Path string
	// Interval is how often the source is polled. Default 30s.
	Interval time.Duration
	// Fleet is the xds server. Required.
	Fleet Fleet
	// Store persists the last good revision. If nil, nothing survives a restart.
	Store *Store
	// DefaultNamespace is the namespace of objects that name none. Default "default".
	DefaultNamespace string
	// Logger receives structured logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Reconciler is the control loop. Create it with New and start it with Run.
type Reconciler struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	trigger chan struct{}

	// mu protects everything below.
	mu sync.Mutex
	// status is what the admin API reports.
	status Status
	// live is the policy that proxies are given (nil before the first good revision).
	live *livePolicy
	// classes caches compiled snapshots of the live policy by ProxyClass key.
	classes map[string]*compiler.Snapshot
	// fleetKey identifies the workload set the classes were compiled against.
	fleetKey string
}

// livePolicy is a revision that passed every step and is served.
type livePolicy struct {
	Revision string
	Objects  []sources.Object
	Policy   *compiler.Policy
}

// New returns a Reconciler for cfg.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Source == nil || cfg.Fleet == nil {
		return nil, fmt.Errorf("creating reconciler: Source and Fleet are required")
	}
	if cfg.Build == nil {
		cfg.Build = func(root, path string) ([]sources.Object, error) { return sources.Build(root, path) }
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.DefaultNamespace == "" {
		cfg.DefaultNamespace = "default"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		cfg:     cfg,
		log:     log,
		metrics: newMetrics(),
		trigger: make(chan struct{}, 1),
		classes: map[string]*compiler.Snapshot{},
	}
	r.status.init()
	return r, nil
}

// Run restores the last good revision from the Store (so proxies are served
// at once even if Git is down), then reconciles every Interval, whenever the
// fleet changes, and whenever Trigger is called, until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	if err := r.restore(); err != nil {
		r.log.Warn("restoring last good revision", "error", err)
	}
	r.syncFleet(ctx)
	r.ReconcileOnce(ctx)
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			r.ReconcileOnce(ctx)
		case <-r.trigger:
			r.ReconcileOnce(ctx)
		case <-r.cfg.Fleet.Changed():
			r.syncFleet(ctx)
		}
	}
}

// Trigger asks Run to reconcile the source now (e.g. from a webhook). It
// never blocks; triggers that arrive while one is pending coalesce.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// restore loads the last good revision from the Store and makes it live.
func (r *Reconciler) restore() error {
	if r.cfg.Store == nil {
		return nil
	}
	lg, err := r.cfg.Store.LastGood()
	if err != nil || lg == nil {
		return err
	}
	policy, diags := compiler.Parse(lg.Objects, compiler.WithDefaultNamespace(r.cfg.DefaultNamespace))
	if diags.HasErrors() {
		return fmt.Errorf("stored revision %s no longer validates: %s", lg.Revision, diags[0])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLive(&livePolicy{Revision: lg.Revision, Objects: lg.Objects, Policy: policy})
	r.status.LastAppliedRevision = lg.Revision
	r.log.Info("serving last good revision from state", "revision", lg.Revision)
	return nil
}

// setLive replaces the live policy and drops compiled classes. r.mu must be held.
func (r *Reconciler) setLive(lp *livePolicy) {
	r.live = lp
	r.classes = map[string]*compiler.Snapshot{}
	r.fleetKey = ""
}

// Package reconciler runs gitmesh's control loop: it polls a Source for new
// Revisions, builds and compiles them, diffs the result against what is
// live, and rolls it out to the fleet wave by wave through the xds server,
// watching NACKs and health analysis, promoting or rolling back on its own.
// It also keeps the controller's state (history, the in-flight rollout, the
// last good revision) under --state-dir and serves the admin API.
//
// A failure at any step leaves the live config untouched and is reported as
// a Flux-style Ready condition with a reason (FetchFailed, BuildFailed,
// ValidationFailed, CompileFailed, RolloutFailed).
package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
)

// Builder builds the policy directory path of a checked-out work tree at
// root into Objects, plus the documents it could not read (which fail
// validation with file:line). sources.Build is the production Builder.
type Builder func(root, path string) ([]sources.Object, []sources.Problem, error)

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
	// Store persists state. If nil, nothing survives a restart.
	Store *Store
	// DefaultNamespace is the namespace of objects that name none. Default "default".
	DefaultNamespace string
	// HTTPClient scrapes proxies, queries Prometheus and calls webhooks.
	// If nil, a client with a 5s timeout is used.
	HTTPClient *http.Client
	// Tick is how often an in-flight rollout is stepped. Default 100ms.
	Tick time.Duration
	// Logger receives structured logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Reconciler is the control loop. Create it with New and start it with Run.
// The Run goroutine owns the rollout state machine; the admin API reaches
// it through commands.
type Reconciler struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	http     *http.Client
	prom     analysis.Querier
	trigger  chan struct{}
	commands chan command
	wg       sync.WaitGroup // webhook calls in flight

	// mu protects everything below (written by the Run goroutine, read by
	// the admin API).
	mu sync.Mutex
	// status is what the admin API reports.
	status Status
	// stable is the last good (promoted) revision; every proxy not updated
	// by the in-flight rollout runs it. nil before the first good revision.
	stable *served
	// rollout is the in-flight (or last finished) rollout.
	rollout *Rollout
	// hold, when set, keeps the fleet on a manually chosen revision.
	hold *Hold
	// rollbackWatch times the last rollback until every proxy ACKed it.
	rollbackWatch *rollbackWatch
	// assigned is the revision each node was last given, by node id.
	assigned map[string]string
}

// New returns a Reconciler for cfg.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Source == nil || cfg.Fleet == nil {
		return nil, fmt.Errorf("creating reconciler: Source and Fleet are required")
	}
	if cfg.Build == nil {
		cfg.Build = func(root, path string) ([]sources.Object, []sources.Problem, error) { return sources.Build(root, path) }
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.DefaultNamespace == "" {
		cfg.DefaultNamespace = "default"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		cfg:      cfg,
		log:      log,
		metrics:  newMetrics(),
		http:     cfg.HTTPClient,
		prom:     &analysis.Prometheus{Client: cfg.HTTPClient},
		trigger:  make(chan struct{}, 1),
		commands: make(chan command),
		assigned: map[string]string{},
	}
	r.status.init()
	return r, nil
}

// Run restores state from the Store (so proxies are served at once even if
// Git is down, and an in-flight rollout resumes), then reconciles every
// Interval, whenever Trigger is called, steps the rollout every Tick, and
// re-assigns snapshots whenever the fleet changes, until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	defer r.wg.Wait()
	if err := r.restore(); err != nil {
		r.log.Warn("restoring state", "error", err)
	}
	r.syncFleet(ctx)
	r.reconcileOnce(ctx)
	poll := time.NewTicker(r.cfg.Interval)
	defer poll.Stop()
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			r.reconcileOnce(ctx)
		case <-r.trigger:
			r.reconcileOnce(ctx)
		case <-r.cfg.Fleet.Changed():
			r.syncFleet(ctx)
			r.stepRollout(ctx)
			r.checkRollbackDone(connected(r.cfg.Fleet.Nodes()))
		case <-tick.C:
			r.stepRollout(ctx)
		case c := <-r.commands:
			c.reply <- r.execute(ctx, c)
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

// restore loads the last good revision, the hold and the in-flight rollout
// from the Store.
func (r *Reconciler) restore() error {
	if r.cfg.Store == nil {
		return nil
	}
	lg, err := r.cfg.Store.LastGood()
	if err != nil || lg == nil {
		return err
	}
	stable, err := r.parseStored(lg.Revision, lg.Objects)
	if err != nil {
		return err
	}
	hold, err := r.cfg.Store.Hold()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.stable, r.hold = stable, hold
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = stable.Revision, stable.Version
	r.mu.Unlock()
	r.log.Info("serving last good revision from state", "revision", lg.Revision)

	inf, err := r.cfg.Store.InFlightRollout()
	if err != nil || inf == nil {
		return err
	}
	canary, err := r.parseStored(inf.Rollout.Revision, inf.Objects)
	if err != nil {
		return fmt.Errorf("resuming rollout %d: %w", inf.Rollout.ID, err)
	}
	ro := inf.Rollout
	ro.Canary = canary
	ro.updated = map[string]bool{}
	ro.markUpdated(ro.Updated)
	// Re-enter the current wave: wait for its ACKs again and bake afresh,
	// with a fresh progress deadline.
	if ro.Phase == PhaseBaking {
		ro.Phase = PhaseProgressing
	}
	ro.waveStarted = time.Now()
	r.mu.Lock()
	r.rollout = &ro
	r.mu.Unlock()
	r.log.Info("resuming rollout", "rollout", ro.ID, "revision", ro.Revision, "phase", ro.Phase, "wave", ro.Wave+1, "updated", len(ro.Updated))
	return nil
}

// parseStored parses objects of a stored revision.
func (r *Reconciler) parseStored(revision string, objs []sources.Object) (*served, error) {
	policy, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(r.cfg.DefaultNamespace))
	if diags.HasErrors() {
		return nil, fmt.Errorf("stored revision %s no longer validates: %s", revision, diags[0])
	}
	return newServed(revision, objs, policy), nil
}

// saveRollout stores ro (with its canary's objects while in flight).
func (r *Reconciler) saveRollout(ro *Rollout) error {
	if r.cfg.Store == nil {
		if ro.ID == 0 {
			r.mu.Lock()
			r.status.nextID++
			ro.ID = r.status.nextID
			r.mu.Unlock()
		}
		return nil
	}
	var objs []sources.Object
	if ro.Canary != nil {
		objs = ro.Canary.Objects
	}
	return r.cfg.Store.SaveRollout(ro, objs)
}

// saveGood stores s as the last good revision.
func (r *Reconciler) saveGood(s *served) {
	if r.cfg.Store == nil {
		return
	}
	if err := r.cfg.Store.SaveLastGood(LastGood{Revision: s.Revision, Version: s.Version, Objects: s.Objects, AppliedAt: time.Now().UTC()}); err != nil {
		r.log.Warn("saving last good revision", "error", err)
	}
}

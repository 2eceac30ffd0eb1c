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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/jwks"
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
	// FetchTimeout bounds one fetch of the source, with the build of what
	// it fetched (Flux's spec.timeout). Default 60s.
	FetchTimeout time.Duration
	// Fleet is the xds server. Required.
	Fleet Fleet
	// Store persists state: *Store (bbolt) locally, kubestate.Store in a
	// cluster. If nil, nothing survives a restart.
	Store StateStore
	// DefaultNamespace is the namespace of objects that name none. Default "default".
	DefaultNamespace string
	// TrustDomain is the mesh's trust domain, in the SPIFFE ids the
	// compiled policy names (auto mTLS SANs, AuthorizationPolicy
	// principals). Default "cluster.local".
	TrustDomain string
	// MeshConfig is the Istio MeshConfig the Telemetry kind reads
	// (compiler.WithMeshConfig). If nil, there are no extension providers.
	MeshConfig *meshv1alpha1.MeshConfig
	// HTTPClient scrapes proxies, queries Prometheus and calls webhooks.
	// Each call is bounded by its own deadline (a scrape and a query by the
	// analysis interval, a webhook by its timeout), so the client needs no
	// Timeout of its own; one would cap the documented webhook timeouts.
	// If nil, a client without a Timeout is used.
	HTTPClient *http.Client
	// Tick is how often an in-flight rollout is stepped. Default 100ms.
	Tick time.Duration
	// Logger receives structured logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Registry, when set (Kubernetes mode), is the service registry every
	// revision is parsed against (compiler.WithRegistry) instead of the
	// Kubernetes objects in Git; on its Changed signal the served
	// revisions are parsed and compiled again. If nil, each revision's own
	// Kubernetes objects are its registry.
	Registry Registry
	// JWKS fetches the keys of RequestAuthentication jwksUri values, off
	// the Run goroutine (with each revision's fetch, bounded by
	// FetchTimeout, and every JWKSRefresh for the stable revision). If
	// nil, nothing is fetched: such tokens are rejected (GM0240).
	JWKS JWKSResolver
	// JWKSRefresh is how often the stable revision's JWKS documents are
	// fetched again, and how long a fetched document is reused. Default
	// jwks.DefaultRefresh (istiod's 20m).
	JWKSRefresh time.Duration
	// Recorder is told of rollouts and failed revisions, e.g. to publish
	// them as Kubernetes Events. If nil, nothing is told.
	Recorder Recorder
	// CA, when set, reports the mesh CA in Status (the certificate
	// manager runs beside the reconciler, not in it).
	CA func() *admin.CAStatus
}

// Recorder receives the reconciler's notable decisions. Its methods are
// called from the Run goroutine and must not block.
type Recorder interface {
	// RolloutEvent is called when a rollout starts (PhasePending), starts
	// a wave (PhaseProgressing, ev.Wave names it) or finishes (a done
	// phase, ev.Reason says why).
	RolloutEvent(ev admin.Event)
	// ReconcileFailed is called when a reconcile pass fails, the first
	// time it fails so: reason is the Ready condition's (FetchFailed,
	// BuildFailed, ValidationFailed, CompileFailed...), revision is ""
	// when the fetch failed.
	ReconcileFailed(revision, reason, message string)
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
	// results carries the outcome of off-loop work to the Run goroutine.
	results chan func(context.Context)
	wg      sync.WaitGroup // webhook calls in flight
	jobs    sync.WaitGroup // offLoop goroutines

	// fetch is the Run goroutine's own; no lock.
	fetch fetchState
	// servicesKey is the registry's services when registryDone last
	// looked (Run's own; see servicesKey).
	servicesKey string
	// reconnectUntil ends the grace after a restart during which a
	// rollout does not start its first wave on an empty fleet (Run's own).
	reconnectUntil time.Time
	// compiled is what parsing and compiling earlier revisions decoded and
	// validated, reused by every parse so that a commit changing a few
	// objects costs about what those objects touch (safe for concurrent
	// use: parse runs off the loop too).
	compiled *compiler.Cache

	// mu protects everything below (written by the Run goroutine, read by
	// the admin API).
	mu sync.Mutex
	// status is what the admin API reports.
	status status
	// stable is the last good (promoted) revision; every proxy not updated
	// by the in-flight rollout runs it. nil before the first good revision.
	stable *served
	// rollout is the in-flight (or last finished) rollout.
	rollout *rollout
	// hold, when set, keeps the fleet on a manually chosen revision.
	hold *admin.Hold
	// rollbackWatches time the rollbacks until every proxy ACKed them.
	rollbackWatches []rollbackWatch
	// assigned is the revision each node was last given, by node id.
	assigned map[string]string
}

// reconnectGrace is how long a restarted controller waits for its fleet to
// reconnect before it starts a rollout's first wave on an empty fleet.
const reconnectGrace = 10 * time.Second

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
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = jwks.DefaultRefresh
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 60 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.DefaultNamespace == "" {
		cfg.DefaultNamespace = "default"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		compiled: compiler.NewCache(),
		cfg:      cfg,
		log:      log,
		metrics:  newMetrics(),
		http:     cfg.HTTPClient,
		prom:     &analysis.Prometheus{Client: cfg.HTTPClient},
		trigger:  make(chan struct{}, 1),
		commands: make(chan command),
		results:  make(chan func(context.Context)),
		assigned: map[string]string{},
	}
	r.status.init()
	return r, nil
}

// Run restores state from the Store (so proxies are served at once even if
// Git is down, and an in-flight rollout resumes), then fetches the source
// every Interval and whenever Trigger is called, steps the rollout every
// Tick, and re-assigns snapshots whenever the fleet changes, until ctx is
// done. Run's goroutine owns the rollout and only decides: fetches,
// scrapes, queries and webhooks run off it (see offLoop).
func (r *Reconciler) Run(ctx context.Context) error {
	defer r.wg.Wait()
	defer r.jobs.Wait()
	if err := r.restore(); err != nil {
		r.log.Warn("restoring state", "error", err)
	}
	r.syncFleet(ctx)
	r.startFetch(ctx)
	poll := time.NewTicker(r.cfg.Interval)
	defer poll.Stop()
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	r.startJWKSRefresh(ctx, r.cfg.JWKSRefresh) // restored revisions were parsed without their keys
	jwksTick := time.NewTicker(r.cfg.JWKSRefresh)
	defer jwksTick.Stop()
	pacer := newFleetPacer()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			r.startFetch(ctx)
		case <-r.trigger:
			r.startFetch(ctx)
		case done := <-r.results:
			done(ctx)
			r.refreshReady()
		case <-r.registryChanged():
			r.registryDone(ctx)
		case <-r.cfg.Fleet.Changed():
			if pacer.Signal(time.Now()) {
				r.fleetChanged(ctx, pacer)
			}
		case <-pacer.Pending():
			r.fleetChanged(ctx, pacer)
		case <-tick.C:
			r.stepRollout(ctx)
			r.checkRollbackDone()
		case <-jwksTick.C:
			r.startJWKSRefresh(ctx, 0)
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
	stable, err := r.parseStored(lg.Revision, lg.Objects, jwksSet{})
	if err != nil {
		return err
	}
	hold, err := r.cfg.Store.Hold()
	if err != nil {
		return err
	}
	failure, err := r.cfg.Store.Failure()
	if err != nil {
		return err
	}
	r.mu.Lock()
	if failure != nil {
		// A revision that failed its rollout stays failed across restarts:
		// it is not rolled out again until a new commit or 'gitmesh resume'.
		r.status.LastAttemptedRevision = failure.Revision
		r.status.lastAttemptFailed = &stepError{failure.Reason, errors.New(failure.Message)}
		r.status.lastErr = r.status.lastAttemptFailed
	}
	r.stable, r.hold = stable, hold
	r.status.LastAppliedRevision, r.status.LastAppliedVersion = stable.Revision, stable.Version
	r.mu.Unlock()
	r.log.Info("serving last good revision from state", "revision", lg.Revision)
	r.reconnectUntil = time.Now().Add(reconnectGrace)

	inf, err := r.cfg.Store.InFlightRollout()
	if err != nil || inf == nil {
		return err
	}
	canary, err := r.parseStored(inf.Rollout.Revision, inf.Objects, jwksSet{})
	if err != nil {
		return fmt.Errorf("resuming rollout %d: %w", inf.Rollout.ID, err)
	}
	ro := rollout{Rollout: inf.Rollout, Canary: canary}
	ro.updated = map[string]bool{}
	ro.markUpdated(ro.Updated)
	// Re-enter the current wave: wait for its ACKs again and bake afresh,
	// with a fresh progress deadline.
	if ro.Phase == admin.PhaseBaking {
		ro.Phase = admin.PhaseProgressing
	}
	ro.waveStarted = time.Now()
	r.mu.Lock()
	r.rollout = &ro
	r.mu.Unlock()
	r.log.Info("resuming rollout", "rollout", ro.ID, "revision", ro.Revision, "phase", ro.Phase, "wave", ro.Wave+1, "updated", len(ro.Updated))
	return nil
}

// parseStored parses objects of a stored revision, on the Run goroutine:
// with the JWKS documents of keys (what a served revision was parsed with),
// as nothing may be fetched here; startJWKSRefresh fetches them after.
func (r *Reconciler) parseStored(revision string, objs []sources.Object, keys jwksSet) (*served, error) {
	policy, diags, reg := r.parse(objs, keys.options()...)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stored revision %s no longer validates: %s", revision, diags[0])
	}
	s := newServed(revision, objs, policy)
	s.reg, s.jwks = reg, keys
	return s, nil
}

// saveRollout stores ro (with its canary's objects while in flight).
func (r *Reconciler) saveRollout(ro *rollout) error {
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
	// The store assigns the ID on the record it is given: give it a copy
	// and set the ID under mu, which Status reads it under.
	rec := ro.Rollout
	err := r.cfg.Store.SaveRollout(&rec, objs)
	if rec.ID != ro.ID {
		r.mu.Lock()
		ro.ID = rec.ID
		r.mu.Unlock()
	}
	return err
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

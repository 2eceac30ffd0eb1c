// Package leader elects one leading replica among the controller's
// replicas in a cluster, on a coordination.k8s.io Lease, with client-go's
// leaderelection. The leader runs the reconciler and serves proxies; the
// others wait, report not ready, and refuse xDS streams.
//
// A replica that loses the Lease stops leading for good: Run returns
// ErrLostLeadership and the process exits, to be restarted as a follower
// (as controller-runtime's managers do). A replica that is killed
// without releasing the Lease is replaced once LeaseDuration has passed
// since its last renewal.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults of Config, client-go's and controller-runtime's.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrLostLeadership is returned by Run when the replica stopped leading
// before ctx was done.
var ErrLostLeadership = errors.New("lost leadership")

// Config configures an Elector.
type Config struct {
	// Client writes the Lease. Required.
	Client kubernetes.Interface
	// Namespace and Name name the Lease. Required.
	Namespace, Name string
	// Identity names this replica in the Lease (holderIdentity), e.g. its
	// pod name. Required; unique among the replicas.
	Identity string
	// LeaseDuration is how long followers wait after the last renewal
	// before they take the Lease over: the longest a killed leader is not
	// replaced. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader retries renewing before it
	// gives up leading. Default 10s; must be less than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is how often followers try to acquire and the leader
	// renews. Default 2s.
	RetryPeriod time.Duration
	// Logger receives structured logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Elector campaigns for the Lease. Create it with New.
type Elector struct {
	cfg     Config
	log     *slog.Logger
	leading atomic.Bool
}

// New returns an Elector for cfg.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		return nil, errors.New("creating leader elector: Client, Namespace, Name and Identity are required")
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.RenewDeadline >= cfg.LeaseDuration {
		return nil, fmt.Errorf("creating leader elector: renew deadline %s must be less than lease duration %s", cfg.RenewDeadline, cfg.LeaseDuration)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, log: log}, nil
}

// Leading reports whether this replica leads now. It is safe for
// concurrent use (the xds gate and /readyz call it).
func (e *Elector) Leading() bool { return e.leading.Load() }

// Run campaigns until this replica leads, then calls lead with a context
// that is done when leadership is lost or ctx is done, and keeps renewing
// the Lease while lead runs. It returns nil when ctx is done,
// ErrLostLeadership when the Lease was lost first, and lead's error when
// lead returns one. The Lease is released when lead returns, so a
// successor takes over at once; a replica killed without releasing it is
// replaced after LeaseDuration.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
		Client:     e.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
	}
	electCtx, stopElection := context.WithCancel(ctx)
	defer stopElection()
	started := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			// client-go calls it in a goroutine of its own; lead runs in
			// Run's goroutine instead, so that Run returns after it.
			OnStartedLeading: func(context.Context) { close(started) },
			OnStoppedLeading: func() { e.leading.Store(false) },
			OnNewLeader: func(id string) {
				if id != e.cfg.Identity {
					e.log.Info("following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating leader elector: %w", err)
	}
	// electionDone closes when client-go stops renewing (or campaigning):
	// electCtx is done or the Lease was lost.
	electionDone := make(chan struct{})
	go func() {
		defer close(electionDone)
		le.Run(electCtx)
	}()
	select {
	case <-started:
	case <-electionDone:
		return nil // ctx done before this replica led
	}
	leadCtx, cancelLead := context.WithCancel(ctx)
	defer cancelLead()
	go func() {
		select {
		case <-electionDone:
			cancelLead()
		case <-leadCtx.Done():
		}
	}()
	e.leading.Store(true)
	e.log.Info("leading", "lease", e.cfg.Namespace+"/"+e.cfg.Name, "identity", e.cfg.Identity)
	err = lead(leadCtx)
	e.leading.Store(false)
	stopElection() // releases the Lease
	<-electionDone
	switch {
	case err != nil:
		return err
	case ctx.Err() != nil:
		return nil
	}
	return ErrLostLeadership
}

package reconciler

import (
	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/sources"
)

// StateStore persists the controller's state: the last good revision and
// every good revision, the rollout history with the in-flight rollout,
// the hold and the failed revision. The reconciler does not care where it
// lives. *Store (bbolt under --state-dir) is the local implementation;
// reconciler/kubestate keeps it in a MeshRollout custom resource for the
// Kubernetes mode.
//
// The reconciler calls the methods from its Run goroutine only, and reads
// the state back (the Get methods) when Run starts or a command needs it.
// A Save must be durable when it returns: the reconciler pushes what it
// saved to proxies right after, and a controller that takes over restores
// from it, so no proxy is ever given an older revision than it had.
type StateStore interface {
	// SaveLastGood records lg as the last good revision and keeps it among
	// the good revisions.
	SaveLastGood(lg LastGood) error
	// LastGood returns the last good revision, or nil when there is none.
	LastGood() (*LastGood, error)
	// GoodRevisions returns every promoted revision the store still keeps.
	GoodRevisions() ([]LastGood, error)
	// SaveRollout records ro in history, assigning it an ID when it has
	// none, and as the in-flight rollout (with objs) until ro.Phase is done.
	SaveRollout(ro *admin.Rollout, objs []sources.Object) error
	// InFlightRollout returns the unfinished rollout, or nil.
	InFlightRollout() (*InFlight, error)
	// History returns the newest limit rollouts (all that are kept when
	// limit <= 0), newest first.
	History(limit int) ([]admin.Rollout, error)
	// SaveHold records h (nil clears it).
	SaveHold(h *admin.Hold) error
	// Hold returns the hold, or nil.
	Hold() (*admin.Hold, error)
	// SaveFailure records f (nil clears it).
	SaveFailure(f *Failure) error
	// Failure returns the recorded failed revision, or nil.
	Failure() (*Failure, error)
}

var _ StateStore = (*Store)(nil)

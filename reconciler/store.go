package reconciler

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/sources"
)

// Buckets of the state database.
var (
	// bucketState holds single-valued state: the last good revision, the
	// in-flight rollout, the hold.
	bucketState = []byte("state")
	// bucketHistory holds every Rollout by big-endian ID.
	bucketHistory = []byte("history")
	// bucketRevisions holds every revision that was promoted (LastGood
	// records by revision), for `gitmesh rollback --to`.
	bucketRevisions = []byte("revisions")
)

const (
	keyLastGood = "last-good"
	keyRollout  = "rollout"
	keyHold     = "hold"
	keyFailure  = "failure"
)

// LastGood is the newest revision that passed every step and was pushed,
// with its built Objects, so a restarted controller serves it at once even
// when Git is unreachable.
type LastGood struct {
	Revision  string           `json:"revision"`
	Version   string           `json:"version"`
	Objects   []sources.Object `json:"objects"`
	AppliedAt time.Time        `json:"appliedAt"`
}

// Store persists controller state in an embedded bbolt database under the
// state directory. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (creating if needed) the store in dir. Only one
// controller may hold it: a second one waits up to timeout, then fails.
func OpenStore(dir string, timeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	path := filepath.Join(dir, "gitmesh.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("opening state %s (is another controller using it?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketHistory, bucketRevisions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing state %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// SaveLastGood records lg as the last good revision, and keeps it among
// the good revisions `rollback --to` can return to.
func (s *Store) SaveLastGood(lg LastGood) error {
	b, err := json.Marshal(lg)
	if err != nil {
		return fmt.Errorf("encoding last good revision: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRevisions).Put([]byte(lg.Revision), b); err != nil {
			return err
		}
		return tx.Bucket(bucketState).Put([]byte(keyLastGood), b)
	})
}

// LastGood returns the last good revision, or nil when there is none.
func (s *Store) LastGood() (*LastGood, error) {
	var lg *LastGood
	if err := s.get(bucketState, keyLastGood, &lg); err != nil {
		return nil, fmt.Errorf("reading last good revision: %w", err)
	}
	return lg, nil
}

// GoodRevisions returns every revision that was ever promoted.
func (s *Store) GoodRevisions() ([]LastGood, error) {
	var out []LastGood
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRevisions).ForEach(func(_, v []byte) error {
			var lg LastGood
			if err := json.Unmarshal(v, &lg); err != nil {
				return err
			}
			out = append(out, lg)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading good revisions: %w", err)
	}
	return out, nil
}

// InFlight is a rollout that has not finished, with its revision's
// objects, so a restarted controller can resume it.
type InFlight struct {
	Rollout admin.Rollout    `json:"rollout"`
	Objects []sources.Object `json:"objects"`
}

// SaveRollout records ro in history, assigning it an ID when it has none,
// and as the in-flight rollout (with objs) until it is done.
func (s *Store) SaveRollout(ro *admin.Rollout, objs []sources.Object) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHistory)
		if ro.ID == 0 {
			id, err := h.NextSequence()
			if err != nil {
				return err
			}
			ro.ID = id
		}
		b, err := json.Marshal(ro)
		if err != nil {
			return fmt.Errorf("encoding rollout: %w", err)
		}
		if err := h.Put(binary.BigEndian.AppendUint64(nil, ro.ID), b); err != nil {
			return err
		}
		st := tx.Bucket(bucketState)
		if ro.Phase.Done() {
			return st.Delete([]byte(keyRollout))
		}
		inf, err := json.Marshal(InFlight{Rollout: *ro, Objects: objs})
		if err != nil {
			return fmt.Errorf("encoding rollout: %w", err)
		}
		return st.Put([]byte(keyRollout), inf)
	})
}

// InFlightRollout returns the unfinished rollout, or nil.
func (s *Store) InFlightRollout() (*InFlight, error) {
	var inf *InFlight
	if err := s.get(bucketState, keyRollout, &inf); err != nil {
		return nil, fmt.Errorf("reading in-flight rollout: %w", err)
	}
	return inf, nil
}

// History returns the newest limit rollouts (all when limit <= 0), newest first.
func (s *Store) History(limit int) ([]admin.Rollout, error) {
	var out []admin.Rollout
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var ro admin.Rollout
			if err := json.Unmarshal(v, &ro); err != nil {
				return err
			}
			out = append(out, ro)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	return out, nil
}

// Hold is a manual rollback's hold: the controller serves Revision and
// does not roll out Head again until a new commit arrives or resume.
type Hold struct {
	Revision string    `json:"revision"`
	Head     string    `json:"head,omitempty"`
	Since    time.Time `json:"since"`
}

// SaveHold records h (nil clears it).
func (s *Store) SaveHold(h *admin.Hold) error {
	return s.put(keyHold, h)
}

// Hold returns the hold, or nil.
func (s *Store) Hold() (*admin.Hold, error) {
	var h *admin.Hold
	if err := s.get(bucketState, keyHold, &h); err != nil {
		return nil, fmt.Errorf("reading hold: %w", err)
	}
	return h, nil
}

// Failure is a revision whose rollout failed (rolled back by a NACK, an
// analysis, a deadline or a person). It is not rolled out again, across
// restarts too, until a new commit arrives or 'gitmesh resume' releases it.
type Failure struct {
	Revision string `json:"revision"`
	// Reason is the Ready condition's reason, e.g. RolloutFailed.
	Reason string `json:"reason"`
	// Message says why, as the Ready condition does.
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// SaveFailure records f (nil clears it).
func (s *Store) SaveFailure(f *Failure) error {
	return s.put(keyFailure, f)
}

// Failure returns the recorded failed revision, or nil.
func (s *Store) Failure() (*Failure, error) {
	var f *Failure
	if err := s.get(bucketState, keyFailure, &f); err != nil {
		return nil, fmt.Errorf("reading failed revision: %w", err)
	}
	return f, nil
}

// put stores v as JSON under key of the state bucket; a nil v deletes it.
func (s *Store) put(key string, v any) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		if v == nil || reflect.ValueOf(v).IsNil() {
			return st.Delete([]byte(key))
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", key, err)
		}
		return st.Put([]byte(key), b)
	})
}

// get decodes the JSON at bucket/key into *dst (a pointer to a pointer),
// leaving it nil when the key is absent.
func (s *Store) get(bucket []byte, key string, dst any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(key))
		if b == nil {
			return nil
		}
		return json.Unmarshal(b, dst)
	})
}

// History returns the newest limit rollouts (all when limit <= 0), newest
// first, with the in-flight one as it is now, redacted as Status is.
func (r *Reconciler) History(limit int) ([]admin.Rollout, error) {
	out := []admin.Rollout{}
	if r.cfg.Store == nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.rollout != nil {
			ro := r.rollout.Rollout
			ro.Waves, ro.Updated, ro.Readings = slices.Clone(ro.Waves), slices.Clone(ro.Updated), slices.Clone(ro.Readings)
			out = append(out, public(ro))
		}
		return out, nil
	}
	h, err := r.cfg.Store.History(limit)
	for _, ro := range h {
		out = append(out, public(ro))
	}
	return out, err
}

package reconciler

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gitmesh/gitmesh/sources"
)

// bucketState holds single-valued controller state (the last good revision).
var bucketState = []byte("state")

const keyLastGood = "last-good"

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
		_, err := tx.CreateBucketIfNotExists(bucketState)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing state %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// SaveLastGood records lg as the last good revision.
func (s *Store) SaveLastGood(lg LastGood) error {
	b, err := json.Marshal(lg)
	if err != nil {
		return fmt.Errorf("encoding last good revision: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte(keyLastGood), b)
	})
}

// LastGood returns the last good revision, or nil when there is none.
func (s *Store) LastGood() (*LastGood, error) {
	var lg *LastGood
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Get([]byte(keyLastGood))
		if b == nil {
			return nil
		}
		lg = &LastGood{}
		return json.Unmarshal(b, lg)
	})
	if err != nil {
		return nil, fmt.Errorf("reading last good revision: %w", err)
	}
	return lg, nil
}

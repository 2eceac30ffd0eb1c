package sds

import (
	"context"

	"github.com/gitmesh/gitmesh/ca"
)

// DirStore keeps the root in a directory (ca.WriteDir): the controller's
// <state-dir>/ca.
type DirStore string

var _ RootStore = DirStore("")

// Save writes m into the directory, each file replaced atomically.
func (d DirStore) Save(_ context.Context, m ca.Material) error { return ca.WriteDir(string(d), m) }

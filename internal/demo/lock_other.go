//go:build !unix

package demo

import (
	"errors"
	"os"
)

// errLocked is tryLock's error when another process holds the lock.
var errLocked = errors.New("locked by another process")

// tryLock does not lock where flock is missing; the state database's own
// lock still keeps a second `up` out, after its timeout.
func tryLock(*os.File) error { return nil }

func unlock(*os.File) error { return nil }

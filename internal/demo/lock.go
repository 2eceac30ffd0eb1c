package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// lockFile is the file in the demo directory a running `gitmesh up` holds
// locked; it records the holder's pid and admin URL for a second `up`.
const lockFile = "up.lock"

// RunningError says that a `gitmesh up` already runs in the directory.
type RunningError struct {
	// Dir is the demo directory.
	Dir string
	// PID is the running process; 0 when it has not written it yet.
	PID int
	// AdminURL is its controller's admin API; empty while it starts.
	AdminURL string
}

func (e *RunningError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gitmesh up is already running in %s", e.Dir)
	switch {
	case e.PID != 0 && e.AdminURL != "":
		fmt.Fprintf(&b, " (pid %d, admin API %s)", e.PID, e.AdminURL)
	case e.PID != 0:
		fmt.Fprintf(&b, " (pid %d, still starting)", e.PID)
	}
	b.WriteString(": use that one (gitmesh status), stop it with Ctrl-C in its terminal")
	if e.PID != 0 {
		fmt.Fprintf(&b, " or kill %d", e.PID)
	}
	b.WriteString(", or run another with --dir")
	return b.String()
}

// lockInfo is what the lock file holds.
type lockInfo struct {
	PID      int    `json:"pid"`
	AdminURL string `json:"adminURL,omitempty"`
}

// dirLock is the held lock of a demo directory.
type dirLock struct {
	f *os.File
}

// lockDir takes the lock of dir without waiting, recording this process's
// pid. When another process holds it, it returns a *RunningError naming it.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := tryLock(f); err != nil {
		defer f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		re := &RunningError{Dir: dir}
		var info lockInfo
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &info) == nil {
			re.PID, re.AdminURL = info.PID, info.AdminURL
		}
		return nil, re
	}
	l := &dirLock{f: f}
	if err := l.record(lockInfo{PID: os.Getpid()}); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

// record replaces the lock file's content with info.
func (l *dirLock) record(info lockInfo) error {
	b, _ := json.Marshal(info)
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("writing %s: %w", l.f.Name(), err)
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("writing %s: %w", l.f.Name(), err)
	}
	return nil
}

// release removes the lock file and unlocks it; later calls do nothing.
func (l *dirLock) release() {
	if l.f == nil {
		return
	}
	// Removed while still locked, so that a second `up` never reads an
	// empty file it could lock.
	_ = os.Remove(l.f.Name())
	_ = unlock(l.f)
	_ = l.f.Close()
	l.f = nil
}

package demo

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// openLog opens Dir/logs/up.log for appending.
func openLog(dir string) (*os.File, error) {
	path := filepath.Join(dir, "logs", "up.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the demo's log: %w", err)
	}
	return f, nil
}

// writeTail copies the last n lines of the file at path to w.
func writeTail(w io.Writer, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return
	}
	lines := bytes.SplitAfter(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintf(w, "last lines of %s:\n", path)
	for _, l := range lines {
		_, _ = w.Write(l)
	}
	fmt.Fprintln(w)
}

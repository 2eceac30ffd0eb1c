package e2etest

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/internal/logging"
)

// LogEnv names the environment variable that turns the tests' logs on:
// debug, info, warn or error.
const LogEnv = "GITMESH_E2E_LOG"

// Logger logs to t when GITMESH_E2E_LOG is set (to debug, info, warn or
// error), else discards.
func Logger(t testing.TB) *slog.Logger {
	lvl := os.Getenv(LogEnv)
	if lvl == "" {
		return slog.New(slog.DiscardHandler)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(lvl))
	return slog.New(logging.Dedup(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: level})))
}

// LogWriter returns a writer that logs each write to t, without its
// trailing newlines.
func LogWriter(t testing.TB) io.Writer { return tWriter{t} }

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New builds a process logger writing to w at level (debug, info, warn or
// error) in format (text or json), its handler wrapped by Dedup.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(Dedup(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(Dedup(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

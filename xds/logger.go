package xds

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// cpLogger adapts slog to go-control-plane's printf-style logger. Its Info
// messages are per-watch chatter, so they go to Debug. It logs resource
// names and versions, never resource contents.
type cpLogger struct {
	l *slog.Logger
}

var _ log.Logger = cpLogger{}

func (c cpLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if c.l.Enabled(ctx, level) {
		c.l.Log(ctx, level, fmt.Sprintf(format, args...), "component", "go-control-plane")
	}
}

// Debugf logs at debug level.
func (c cpLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args...) }

// Infof logs at debug level.
func (c cpLogger) Infof(format string, args ...any) { c.logf(slog.LevelDebug, format, args...) }

// Warnf logs at warn level.
func (c cpLogger) Warnf(format string, args ...any) { c.logf(slog.LevelWarn, format, args...) }

// Errorf logs at error level.
func (c cpLogger) Errorf(format string, args ...any) { c.logf(slog.LevelError, format, args...) }

// serverv3Logger is the server option that routes go-control-plane's
// stream logs (SotW and delta) to l.
func serverv3Logger(l *slog.Logger) config.XDSOption {
	return sotw.WithLogger(cpLogger{l})
}

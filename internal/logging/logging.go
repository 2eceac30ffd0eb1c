// Package logging holds gitmesh's slog handler wrapper: components add
// their identity with Logger.With as the logger is handed down
// (component=controller, then component=xds), and a key set again must
// replace the earlier value rather than print twice.
package logging

import (
	"context"
	"log/slog"
	"slices"
)

// Dedup wraps h so that a key given again, by a later With or by the
// record itself, replaces the earlier value in place instead of repeating
// the key: logger.With("component", "controller").With("component", "xds")
// logs component=xds once. Groups (WithGroup) start a new scope: keys in
// different groups never replace each other.
func Dedup(h slog.Handler) slog.Handler {
	if _, ok := h.(*dedupHandler); ok {
		return h
	}
	return &dedupHandler{base: h, withed: h}
}

// dedupHandler keeps the attributes of the current group scope itself, so
// that it can replace them, and hands them to the wrapped handler once
// (withed), which formats them ahead of time as slog's handlers do.
type dedupHandler struct {
	// base is the wrapped handler before this scope's attrs.
	base slog.Handler
	// attrs are this scope's attributes, each key once, in the order the
	// keys were first set.
	attrs []slog.Attr
	// withed is base.WithAttrs(attrs).
	withed slog.Handler
}

// Enabled reports whether the wrapped handler handles level.
func (h *dedupHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

// WithAttrs returns a handler with as added, replacing attributes of the
// same key.
func (h *dedupHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	attrs := merge(h.attrs, as)
	return &dedupHandler{base: h.base, attrs: attrs, withed: h.base.WithAttrs(attrs)}
}

// WithGroup returns a handler whose later attributes are in group name.
func (h *dedupHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	g := h.withed.WithGroup(name)
	return &dedupHandler{base: g, withed: g}
}

// Handle writes r; its attributes replace With attributes of the same key.
func (h *dedupHandler) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) == 0 {
		return h.withed.Handle(ctx, r)
	}
	clash := false
	r.Attrs(func(a slog.Attr) bool {
		clash = index(h.attrs, a.Key) >= 0
		return !clash
	})
	if !clash {
		return h.withed.Handle(ctx, r) // the common case: no copy
	}
	own := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(merge(h.attrs, own)...)
	return h.base.Handle(ctx, out)
}

// merge returns attrs with as applied: a known key is replaced in place,
// a new one appended.
func merge(attrs, as []slog.Attr) []slog.Attr {
	out := slices.Clone(attrs)
	for _, a := range as {
		if i := index(out, a.Key); i >= 0 && a.Key != "" {
			out[i] = a
			continue
		}
		out = append(out, a)
	}
	return out
}

func index(attrs []slog.Attr, key string) int {
	return slices.IndexFunc(attrs, func(a slog.Attr) bool { return a.Key == key })
}

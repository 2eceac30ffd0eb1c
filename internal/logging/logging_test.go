package logging

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestDedup(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{
			name: "a later With replaces the key in place",
			log: func(l *slog.Logger) {
				l.With("component", "controller", "repo", "r").With("component", "xds").Info("listening", "addr", ":1")
			},
			want: `level=INFO msg=listening component=xds repo=r addr=:1`,
		},
		{
			name: "the record's own key wins",
			log:  func(l *slog.Logger) { l.With("node_id", "a").Info("connected", "node_id", "b", "role", "sidecar") },
			want: `level=INFO msg=connected node_id=b role=sidecar`,
		},
		{
			name: "no clash keeps the order",
			log:  func(l *slog.Logger) { l.With("component", "proxy").With("node_id", "n1").Info("up", "port", 1) },
			want: `level=INFO msg=up component=proxy node_id=n1 port=1`,
		},
		{
			name: "groups are scopes of their own",
			log:  func(l *slog.Logger) { l.With("id", 1).WithGroup("req").With("id", 2).Info("x", "id", 3) },
			want: `level=INFO msg=x id=1 req.id=3`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			h := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
			tc.log(slog.New(Dedup(h)))
			if got := strings.TrimSpace(b.String()); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func BenchmarkDedup(b *testing.B) {
	l := slog.New(Dedup(slog.NewTextHandler(io.Discard, nil))).With("component", "controller").With("component", "proxy", "node_id", "n1")
	b.ReportAllocs()
	for b.Loop() {
		l.Info("request", "status", 200, "bytes", 1024)
	}
}

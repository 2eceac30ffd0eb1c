package sds

import (
	"testing"
	"time"
)

// TestRotateAt: renewal once the grace ratio of the lifetime is left,
// jittered either way, counted from issue (not from the backdated
// NotBefore).
func TestRotateAt(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		rand float64
		ttl  time.Duration
		want time.Duration
	}{
		{"middle", 0.5, 24 * time.Hour, 12 * time.Hour},
		{"earliest", 0, 24 * time.Hour, time.Duration(0.51 * float64(24*time.Hour))},
		{"latest", 1, 24 * time.Hour, time.Duration(0.49 * float64(24*time.Hour))},
		{"short", 0.5, 3 * time.Second, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manager{ratio: DefaultGraceRatio, jitter: DefaultGraceJitter, rand: func() float64 { return tc.rand }}
			if got := m.rotateAt(issued, issued.Add(tc.ttl)).Sub(issued); got != tc.want {
				t.Fatalf("rotateAt = issue + %v; want + %v", got, tc.want)
			}
		})
	}
}

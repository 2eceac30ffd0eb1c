package pace

import (
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name      string
		reaction  time.Duration // the previous reaction's cost
		signalAt  time.Duration // after the previous reaction ended
		wantNow   bool
		wantDelay time.Duration // when held: how long until due, at most
	}{
		{name: "quiet spell", reaction: 10 * time.Millisecond, signalAt: time.Second, wantNow: true},
		{name: "right after a cheap reaction", reaction: time.Millisecond, signalAt: 500 * time.Microsecond, wantDelay: 1500 * time.Microsecond},
		{name: "after the gap", reaction: time.Millisecond, signalAt: 2 * time.Millisecond, wantNow: true},
		{name: "gap bounded by Max", reaction: time.Second, signalAt: 0, wantDelay: 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Pacer{Factor: 2, Max: 100 * time.Millisecond}
			end := t0.Add(tc.reaction)
			p.Reacted(t0, end)
			got := p.Signal(end.Add(tc.signalAt))
			if got != tc.wantNow {
				t.Fatalf("Signal = %t; want %t", got, tc.wantNow)
			}
			if got {
				if p.Pending() != nil {
					t.Error("Pending is set after a signal let through")
				}
				return
			}
			if p.Pending() == nil {
				t.Fatal("held signal without Pending")
			}
			if p.Signal(end.Add(tc.signalAt)) {
				t.Error("a second signal while one is held was let through")
			}
			if due := p.next.Sub(end.Add(tc.signalAt)); due != tc.wantDelay {
				t.Errorf("due in %s; want %s", due, tc.wantDelay)
			}
			p.Reacted(end, end)
			if p.Pending() != nil {
				t.Error("Pending still set after Reacted")
			}
		})
	}
}

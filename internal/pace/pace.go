// Package pace spaces out a loop's reactions to bursts of change signals,
// so that what the reactions cost stays a bounded share of the CPU however
// fast the signals come.
//
// The controller's loops react to the xds server's fleet signals, which
// fire on every connect, disconnect, ACK and NACK: a push to thousands of
// proxies brings thousands of ACKs within a second, and a reaction reads
// the whole fleet. A Pacer lets a signal after a quiet spell through at
// once, and holds one that follows a reaction until a gap proportional to
// what that reaction cost has passed, so a burst is handled in a few
// batches.
package pace

import "time"

// Pacer decides when a loop next reacts to a signal. The zero value reacts
// to every signal at once; set Factor and Max. A Pacer is used by one
// goroutine.
type Pacer struct {
	// Factor is the gap after a reaction, in multiples of what the
	// reaction took: reactions then take at most 1/(1+Factor) of the
	// loop's time.
	Factor int
	// Max bounds the gap, and so how late a held signal is handled.
	Max time.Duration

	next    time.Time        // no reaction before then
	pending <-chan time.Time // fires when a held signal is due; nil if none
}

// Signal records a signal at now and reports whether to react now. If not,
// Pending fires when the reaction is due (signals meanwhile coalesce).
func (p *Pacer) Signal(now time.Time) bool {
	if p.pending != nil {
		return false
	}
	if d := p.next.Sub(now); d > 0 {
		p.pending = time.After(d)
		return false
	}
	return true
}

// Pending returns a channel that fires when a held signal is due; nil
// (never ready in a select) when none is held.
func (p *Pacer) Pending() <-chan time.Time { return p.pending }

// Reacted records a reaction that ran from start to end; a held signal is
// taken to be handled by it.
func (p *Pacer) Reacted(start, end time.Time) {
	p.pending = nil
	p.next = end.Add(min(end.Sub(start)*time.Duration(p.Factor), p.Max))
}

package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// maxBufferedBody is how much of a request body the proxy keeps to replay
// it on a retry or send it to a mirror; a larger body disables both for
// that request, as Envoy's per_connection_buffer_limit_bytes (1 MiB).
const maxBufferedBody = 1 << 20

// bufferBody reads a request body of up to maxBufferedBody into rs so it
// can be sent to mirrors and replayed; a larger one is streamed and
// neither mirrored nor replayable. Only routes with mirrors need it: a
// retry replays a streamed body (see streamBody).
func bufferBody(r *http.Request, rs *requestState) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		rs.replayable = true
		return
	}
	if r.ContentLength > maxBufferedBody {
		return
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
	if err != nil || len(buf) > maxBufferedBody {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	rs.body, rs.replayable = buf, true
}

// streamBody prepares a request whose route retries: a request without a
// body is replayable as is; a body is streamed to the first attempt while
// the proxy keeps a copy of what it sent (up to maxBufferedBody), as
// Envoy's router buffers for retries, so that a retry can replay it
// without the first attempt waiting for the whole body.
func streamBody(r *http.Request, rs *requestState) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		rs.replayable = true
		return
	}
	if r.ContentLength > maxBufferedBody {
		return // never replayable: stream it untouched
	}
	rs.replay = &replayBody{src: r.Body}
	r.Body = rs.replay.reader()
}

type readCloser struct {
	io.Reader
	io.Closer
}

// replayBody is a streamed request body and the copy of it kept for
// retries. Each attempt reads it through its own replayReader: from the
// copy up to what was read so far, then from the downstream body, which
// extends the copy. Attempts may overlap (a transport can still be
// writing an attempt's body after its response arrived), so reads are
// serialised.
type replayBody struct {
	// mu protects buf, overflow, and reads of src.
	mu  sync.Mutex
	src io.ReadCloser
	// buf is everything read from src so far, unless overflow.
	buf []byte
	// overflow is set once more than maxBufferedBody was read: buf is
	// dropped and the body cannot be replayed.
	overflow bool
}

// replayable reports whether a new attempt can send the body again.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

// reader returns a reader of the body from its start, for one attempt.
func (b *replayBody) reader() *replayReader { return &replayReader{b: b} }

// errBodyClosed is a read of an attempt's body after the attempt ended.
var errBodyClosed = errors.New("request body of a finished attempt")

// replayReader is one attempt's view of a replayBody. Closing it ends the
// attempt's reads; the downstream body stays open for later attempts.
type replayReader struct {
	b *replayBody
	// off is how much of the body this reader returned.
	off int
	// past is set on the reader whose read overflowed the copy: it goes
	// on reading the downstream body alone.
	past   bool
	closed atomic.Bool
}

// Read implements io.Reader.
func (r *replayReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, errBodyClosed
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.past:
		return b.src.Read(p)
	case b.overflow:
		// The bytes this reader still needs were dropped; no attempt
		// starts once the copy overflowed, so only a finished one can
		// get here.
		return 0, errBodyClosed
	case r.off < len(b.buf):
		n := copy(p, b.buf[r.off:])
		r.off += n
		return n, nil
	}
	n, err := b.src.Read(p)
	if n > 0 {
		if len(b.buf)+n > maxBufferedBody {
			b.buf, b.overflow, r.past = nil, true, true
		} else {
			b.buf = append(b.buf, p[:n]...)
			r.off += n
		}
	}
	return n, err
}

// Close implements io.Closer.
func (r *replayReader) Close() error {
	r.closed.Store(true)
	return nil
}

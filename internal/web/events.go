package web

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Event names of the stream. Each event's data is a full JSON document
// that replaces the page's previous one of that name.
const (
	// eventVocab is sent first: the tone of each phase, sync state, check
	// result and severity (vocab).
	eventVocab = "vocab"
	// eventStatus is a statusView.
	eventStatus = "status"
	// eventHistory is []admin.Rollout, newest first.
	eventHistory = "history"
	// eventGraph is an admin.Graph.
	eventGraph = "graph"
)

// eventOrder is the order in which pending events are written.
var eventOrder = [...]string{eventStatus, eventHistory, eventGraph}

// writeTimeout bounds one write to an event stream: a page that stops
// reading is dropped rather than holding a goroutine.
const writeTimeout = 10 * time.Second

// hub fans the latest documents out to the open streams. Each stream keeps
// only the newest document of each name not yet written, so a slow page
// skips intermediate states instead of blocking the publisher or growing
// a queue.
type hub struct {
	// wakeStatus and wakeGraph ask the pollers to read now (a page opened).
	wakeStatus, wakeGraph chan struct{}

	// mu protects subs, latest and stopped.
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	latest  map[string][]byte
	stopped bool
}

// subscriber is one open event stream.
type subscriber struct {
	// notify has a value when pending has documents.
	notify chan struct{}
	// done is closed when the hub stops.
	done chan struct{}
	// mu protects pending.
	mu      sync.Mutex
	pending map[string][]byte
}

func newHub() *hub {
	return &hub{
		wakeStatus: make(chan struct{}, 1), wakeGraph: make(chan struct{}, 1),
		subs: map[*subscriber]struct{}{}, latest: map[string][]byte{},
	}
}

// subscribe adds a stream that starts with the latest documents, and wakes
// the pollers; false once the hub has stopped.
func (h *hub) subscribe() (*subscriber, bool) {
	s := &subscriber{notify: make(chan struct{}, 1), done: make(chan struct{}), pending: map[string][]byte{}}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, false
	}
	for name, data := range h.latest {
		s.offer(name, data)
	}
	h.subs[s] = struct{}{}
	for _, c := range []chan struct{}{h.wakeStatus, h.wakeGraph} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return s, true
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// watched reports whether a stream is open.
func (h *hub) watched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// publish makes data the latest document of name and offers it to every
// stream; it reports false (and sends nothing) when data is unchanged.
func (h *hub) publish(name string, data []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if bytes.Equal(h.latest[name], data) {
		return false
	}
	h.latest[name] = data
	for s := range h.subs {
		s.offer(name, data)
	}
	return true
}

// stop ends every stream and refuses new ones.
func (h *hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	for s := range h.subs {
		close(s.done)
	}
	h.subs = map[*subscriber]struct{}{}
}

func (s *subscriber) offer(name string, data []byte) {
	s.mu.Lock()
	s.pending[name] = data
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take returns the pending documents in eventOrder and clears them.
func (s *subscriber) take() [][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][2]string
	for _, name := range eventOrder {
		if data, ok := s.pending[name]; ok {
			out = append(out, [2]string{name, string(data)})
		}
	}
	clear(s.pending)
	return out
}

// serveEvents streams the page's documents as server-sent events: a retry
// hint and the vocabulary first, then every change of status, history and
// graph, with a comment every keep-alive interval while idle. It returns
// when the page goes away, a write fails or times out, or Run returns.
func (s *Server) serveEvents(w http.ResponseWriter, req *http.Request) {
	sub, ok := s.hub.subscribe()
	if !ok {
		http.Error(w, "the web view is stopping", http.StatusServiceUnavailable)
		return
	}
	defer s.hub.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	send := func(write func() error) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := write(); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(func() error {
		_, err := fmt.Fprintf(w, "retry: 2000\n\nevent: %s\ndata: %s\n\n", eventVocab, mustJSON(newVocab()))
		return err
	}) {
		return
	}
	keep := time.NewTicker(s.keepAlive)
	defer keep.Stop()
	for {
		select {
		case <-req.Context().Done():
			return
		case <-sub.done:
			return
		case <-keep.C:
			if !send(func() error { _, err := fmt.Fprint(w, ": keep-alive\n\n"); return err }) {
				return
			}
		case <-sub.notify:
			docs := sub.take()
			if !send(func() error {
				for _, d := range docs {
					// JSON from encoding/json has no raw newlines: one data line.
					if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", d[0], d[1]); err != nil {
						return err
					}
				}
				return nil
			}) {
				return
			}
		}
	}
}

package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// listenerSet owns the proxy's traffic sockets. An address is bound
// ("reserved") as soon as an accepted LDS update names it, so an address
// that cannot be bound is NACKed; it starts serving when a configuration
// that uses it is swapped in; it is drained and closed once neither the
// applied configuration nor the accepted LDS update names it. An address
// that stays in the configuration keeps its socket and its connections.
type listenerSet struct {
	log     *slog.Logger
	drain   time.Duration
	handler func(addr string) http.Handler

	// mu protects sockets and closed.
	mu      sync.Mutex
	sockets map[string]*socket
	closed  bool
	// wg tracks serve and drain goroutines.
	wg sync.WaitGroup
}

// socket is one bound address.
type socket struct {
	name string // listener name, for logs
	ln   net.Listener
	srv  *http.Server // nil until it serves
}

func newListenerSet(log *slog.Logger, drain time.Duration, handler func(string) http.Handler) *listenerSet {
	return &listenerSet{log: log, drain: drain, handler: handler, sockets: map[string]*socket{}}
}

// reserve binds every address of addrs (address → listener name) that is
// not bound yet. On failure it closes what this call bound and returns an
// error naming the listener.
func (s *listenerSet) reserve(addrs map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("binding listeners: proxy is shutting down")
	}
	var opened []string
	for _, addr := range sortedKeys(addrs) {
		if _, ok := s.sockets[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, a := range opened {
				s.sockets[a].ln.Close()
				delete(s.sockets, a)
			}
			return &resourceError{typeURL: listenerType, name: addrs[addr], field: "address", err: fmt.Errorf("binding %s: %w", addr, err)}
		}
		s.sockets[addr] = &socket{name: addrs[addr], ln: ln}
		opened = append(opened, addr)
	}
	return nil
}

// sync starts serving every address in serve, and drains and closes every
// socket whose address is in neither serve nor keep.
func (s *listenerSet) sync(serve map[string]*listenerConfig, keep map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for addr, sk := range s.sockets {
		if lc, ok := serve[addr]; ok {
			sk.name = lc.name
			if sk.srv == nil {
				s.startLocked(addr, sk)
			}
			continue
		}
		if _, ok := keep[addr]; ok {
			continue
		}
		delete(s.sockets, addr)
		s.log.Info("closing listener", "listener", sk.name, "address", addr)
		s.stopLocked(sk)
	}
}

func (s *listenerSet) startLocked(addr string, sk *socket) {
	sk.srv = &http.Server{
		Handler:           s.handler(addr),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	sk.srv.Protocols.SetHTTP1(true)
	sk.srv.Protocols.SetUnencryptedHTTP2(true)
	s.log.Info("serving listener", "listener", sk.name, "address", addr)
	srv, ln := sk.srv, sk.ln
	s.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			s.log.Error("listener stopped", "address", addr, "error", err)
		}
	})
}

// stopLocked drains a socket in the background (owned by wg): in-flight
// requests get up to the drain timeout.
func (s *listenerSet) stopLocked(sk *socket) {
	if sk.srv == nil {
		sk.ln.Close()
		return
	}
	srv := sk.srv
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.drain)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	})
}

// addrs returns the bound addresses (for tests and the admin endpoint).
func (s *listenerSet) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.sockets)
}

// closeAll drains and closes every socket and waits for all goroutines.
func (s *listenerSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for addr, sk := range s.sockets {
		delete(s.sockets, addr)
		s.stopLocked(sk)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

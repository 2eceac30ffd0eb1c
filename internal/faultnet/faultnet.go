// Package faultnet holds network faults for tests: a listener that accepts
// TCP connections and never answers (BlackHole), and a TCP proxy that can
// be switched between passing traffic through and swallowing it (Switch).
// They stand in for a Git server, a Prometheus, a webhook or a scrape
// target that hangs, the failure a timeout must bound; a refused
// connection, which fails fast, needs no helper.
//
// Everything binds loopback addresses given by the caller and is stopped
// by Close, which also releases every connection it holds, so a client
// stuck on one returns.
package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// connSet tracks open connections so Close can release them.
type connSet struct {
	mu     sync.Mutex // protects conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// add tracks c; it closes c and reports false once the set is closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

// remove stops tracking c and closes it.
func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// len returns the number of tracked connections.
func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeAll closes every tracked connection and refuses later adds.
func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.closed = true
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// hold reads and discards from c until it fails (the peer or Close closed
// it), then forgets it. It never writes.
func (s *connSet) hold(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
	s.remove(c)
}

// BlackHole is a TCP listener that accepts every connection, reads and
// discards what the client sends and never writes a byte: a server that
// hangs. A client without a timeout waits on it until Close.
type BlackHole struct {
	ln       net.Listener
	held     connSet
	wg       sync.WaitGroup // the accept loop and the holders
	mu       sync.Mutex     // protects accepted
	accepted int
}

// NewBlackHole listens on addr ("127.0.0.1:0" picks a free port) and
// starts accepting.
func NewBlackHole(addr string) (*BlackHole, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for a black hole on %s: %w", addr, err)
	}
	b := &BlackHole{ln: ln}
	b.wg.Go(b.accept)
	return b, nil
}

func (b *BlackHole) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.accepted++
		b.mu.Unlock()
		if b.held.add(c) {
			b.wg.Go(func() { b.held.hold(c) })
		}
	}
}

// Addr returns the bound host:port.
func (b *BlackHole) Addr() string { return b.ln.Addr().String() }

// URL returns "http://<Addr><path>", for clients that take a URL.
func (b *BlackHole) URL(path string) string { return "http://" + b.Addr() + path }

// Accepted returns how many connections were accepted so far.
func (b *BlackHole) Accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted
}

// Held returns how many connections are open now.
func (b *BlackHole) Held() int { return b.held.len() }

// Close stops listening and closes every held connection, so the clients
// waiting on them fail. It waits for its goroutines.
func (b *BlackHole) Close() error {
	err := b.ln.Close()
	b.held.closeAll()
	b.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

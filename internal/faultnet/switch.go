package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a Switch does with traffic.
type Mode int

// Modes of a Switch.
const (
	// Pass forwards every connection to the target, byte for byte.
	Pass Mode = iota
	// Hole swallows traffic: new connections are accepted and never
	// answered, and on connections already open (an HTTP keep-alive
	// connection, a gRPC stream) what the client sends from then on is
	// discarded, so a client reusing a pooled connection hangs just like a
	// new one. An answer already under way still arrives: every client that
	// hangs has sent something into the hole (see Swallowed).
	Hole
)

// String returns "pass" or "hole".
func (m Mode) String() string {
	if m == Hole {
		return "hole"
	}
	return "pass"
}

// Switch is a TCP proxy in front of a real server that a test switches
// into a black hole and back (SetMode), e.g. after a client has fetched
// from the server once.
type Switch struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and one goroutine pair per connection

	// mu protects mode, conns, closed and swallowed.
	mu        sync.Mutex
	mode      Mode
	conns     map[*switchConn]struct{}
	closed    bool
	swallowed int64
}

// switchConn is one client connection through a Switch.
type switchConn struct {
	client net.Conn
	up     net.Conn // nil when accepted in Hole mode
	hole   bool     // what the client sends is swallowed; guarded by Switch.mu
}

// NewSwitch listens on addr ("127.0.0.1:0" picks a free port) and forwards
// connections to target (host:port), starting in Pass mode.
func NewSwitch(addr, target string) (*Switch, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for a switch on %s: %w", addr, err)
	}
	s := &Switch{ln: ln, target: target, conns: map[*switchConn]struct{}{}}
	s.wg.Go(s.accept)
	return s, nil
}

// Addr returns the bound host:port.
func (s *Switch) Addr() string { return s.ln.Addr().String() }

// Mode returns the current mode.
func (s *Switch) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode switches to m. Switching to Hole swallows every open connection
// (see Hole); switching back to Pass closes the swallowed ones, so their
// clients fail and reconnect through the restored path.
func (s *Switch) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == m {
		return
	}
	s.mode = m
	for c := range s.conns {
		switch {
		case m == Hole:
			c.hole = true
		case c.hole:
			c.client.Close()
			if c.up != nil {
				c.up.Close()
			}
		}
	}
}

// Held returns how many client connections are swallowed now.
func (s *Switch) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.hole {
			n++
		}
	}
	return n
}

// Swallowed returns how many bytes clients sent into the hole so far: it
// grows once a client has sent a request that will never be answered.
func (s *Switch) Swallowed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swallowed
}

// Close stops listening and closes every connection, forwarded or
// swallowed. It waits for its goroutines.
func (s *Switch) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.client.Close()
		if c.up != nil {
			c.up.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Switch) accept() {
	for {
		client, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &switchConn{client: client}
		if s.Mode() == Pass {
			up, err := net.DialTimeout("tcp", s.target, 5*time.Second)
			if err != nil {
				client.Close() // the target is down: fail as it would
				continue
			}
			c.up = up
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			client.Close()
			if c.up != nil {
				c.up.Close()
			}
			return
		}
		c.hole = s.mode == Hole || c.up == nil
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		if c.up != nil {
			s.wg.Go(func() { s.downstream(c) })
		}
		s.wg.Go(func() { s.upstream(c) })
	}
}

// upstream forwards what the client sends, or swallows it once the
// connection is in the hole; it ends when the client side fails and then
// closes both sides.
func (s *Switch) upstream(c *switchConn) {
	defer s.drop(c)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 && !s.forward(c, buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// forward writes p upstream, or counts it as swallowed when c is in the
// hole. It reports false when the upstream side failed.
func (s *Switch) forward(c *switchConn, p []byte) bool {
	s.mu.Lock()
	if c.hole {
		s.swallowed += int64(len(p))
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	_, err := c.up.Write(p)
	return err == nil
}

// downstream copies the server's answers to the client until the upstream
// side ends; it closes the client then, unless the connection is in the
// hole (upstream keeps holding it).
func (s *Switch) downstream(c *switchConn) {
	_, _ = io.Copy(c.client, c.up)
	s.mu.Lock()
	hole := c.hole
	s.mu.Unlock()
	if !hole {
		c.client.Close()
	}
}

// drop forgets c and closes both sides.
func (s *Switch) drop(c *switchConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.client.Close()
	if c.up != nil {
		c.up.Close()
	}
}

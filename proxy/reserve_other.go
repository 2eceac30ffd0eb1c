//go:build !unix

package proxy

import (
	"net"
	"sync"
)

// listenReservation holds an address on platforms where the proxy cannot
// bind without listening: the socket listens at once, and connections
// wait in its accept queue until the listener serves.
type listenReservation struct {
	mu sync.Mutex // protects ln
	ln net.Listener
}

func reserveAddr(addr string) (reservation, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &listenReservation{ln: ln}, nil
}

func (r *listenReservation) listen() (net.Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ln := r.ln
	r.ln = nil
	if ln == nil {
		return nil, net.ErrClosed
	}
	return ln, nil
}

func (r *listenReservation) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return nil
	}
	err := r.ln.Close()
	r.ln = nil
	return err
}

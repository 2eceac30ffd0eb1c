//go:build unix

package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
)

// listenBacklog is the accept queue length of a listening socket.
const listenBacklog = 4096

// fdReservation is a TCP socket bound to its address but not listening:
// the address is taken (bind errors surface when the Listener is
// accepted, so the update can be NACKed) while a client connecting to it
// is refused at once, as Envoy binds a warming listener's socket and calls
// listen() only when the listener is added to the workers.
type fdReservation struct {
	// mu protects fd; -1 once handed over or closed.
	mu sync.Mutex
	fd int
}

// reserveAddr binds addr ("ip:port") without listening.
func reserveAddr(addr string) (reservation, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", addr, err)
	}
	family := syscall.AF_INET6
	if ap.Addr().Is4() {
		family = syscall.AF_INET
	}
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// As net.Listen: SO_REUSEADDR, and dual-stack IPv6 sockets.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("setsockopt", err)
	}
	var sa syscall.Sockaddr
	if family == syscall.AF_INET {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0)
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return &fdReservation{fd: fd}, nil
}

// listen starts listening and returns the socket as a net.Listener; the
// reservation is used up.
func (r *fdReservation) listen() (net.Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil, net.ErrClosed
	}
	fd := r.fd
	r.fd = -1
	if err := syscall.Listen(fd, listenBacklog); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("listen", err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // FileListener holds its own descriptor
	return net.FileListener(f)
}

// Close releases the address if listen has not been called.
func (r *fdReservation) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil
	}
	err := syscall.Close(r.fd)
	r.fd = -1
	return err
}

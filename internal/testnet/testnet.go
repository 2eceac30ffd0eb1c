// Package testnet hands out loopback addresses for tests whose servers
// must be told their address before they bind it (a proxy's listeners are
// its node metadata, so a test picks ports, then the proxy binds them),
// and serves test servers on loopback until their test ends.
package testnet

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Ports FreeAddr hands out: [portBase, portBase+portSpan), below the
// kernel's ephemeral range (32768-60999 on Linux), so no `:0` listener or
// outgoing connection can take one between the pick and the bind.
const (
	portBase = 20000
	portSpan = 12000
)

// next is FreeAddr's sequence, started at an offset drawn from the process
// id so that test binaries running side by side rarely meet. It is package
// state on purpose: ports are a process-wide resource.
var next = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(int64(os.Getpid() * 97 % portSpan))
	return &n
}()

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago and
// that this process has not handed out before.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrOn(t, "127.0.0.1")
}

// FreeAddrOn is FreeAddr on the loopback IP ip (127.0.0.0/8 is all
// loopback on Linux), for tests that tell proxies apart by source IP.
func FreeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	for range 1000 {
		port := portBase + int(next.Add(1))%portSpan
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue // in use by something else
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("testnet: no free port below the ephemeral range")
	return ""
}

// stopTimeout bounds how long a served server may take to stop once its
// test ended.
const stopTimeout = 10 * time.Second

// Listen returns a listener on a kernel-chosen 127.0.0.1 port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// Serve runs serve (a server's Serve(ctx, lis) method) on lis until the
// test ends. The test's cleanup cancels serve's context and fails the test
// when serve returns an error or does not return within stopTimeout.
func Serve(t testing.TB, lis net.Listener, serve func(context.Context, net.Listener) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v; want nil", err)
			}
		case <-time.After(stopTimeout):
			t.Error("Serve did not return after its context was done")
		}
	})
}

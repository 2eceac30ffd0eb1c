// Package testnet hands out loopback addresses for tests whose servers
// must be told their address before they bind it (a proxy's listeners are
// its node metadata, so a test picks ports, then the proxy binds them).
package testnet

import (
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
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
	for range 1000 {
		port := portBase + int(next.Add(1))%portSpan
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use by something else
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("testnet: no free port below the ephemeral range")
	return ""
}

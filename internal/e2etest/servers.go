package e2etest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/proxy"
)

// Backend starts an HTTP server on loopback answering its name, closed
// when the test ends.
func Backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(nameHandler(name))
	t.Cleanup(s.Close)
	return s
}

// BackendAt starts an HTTP server on addr answering name, closed when the
// test ends.
func BackendAt(t testing.TB, addr, name string) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	s := httptest.NewUnstartedServer(nameHandler(name))
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func nameHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	})
}

// RunProxy runs a bundled proxy announcing w to the xDS server at xdsAddr
// until the test ends, and returns w. An empty Admin gets a free loopback
// address. The proxy must stop within StopTimeout of the test's end.
func RunProxy(t testing.TB, xdsAddr string, w nodemeta.Workload) nodemeta.Workload {
	t.Helper()
	if w.Admin == "" {
		w.Admin = testnet.FreeAddr(t)
	}
	p, err := proxy.New(proxy.Config{XDSAddr: xdsAddr, Workload: w, Logger: Logger(t).With("component", "proxy")}) // the proxy adds node_id
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err, ok := WaitDone(t, "proxy "+w.ID, done, StopTimeout); ok && err != nil {
			t.Errorf("proxy %s: %v", w.ID, err)
		}
	})
	return w
}

// WaitDone waits at most d for done to deliver (or be closed) and returns
// what it delivered. After d it reports that what did not stop (something
// it runs ignores its context) and returns false, rather than hang.
func WaitDone[T any](t testing.TB, what string, done <-chan T, d time.Duration) (T, bool) {
	t.Helper()
	select {
	case v := <-done:
		return v, true
	case <-time.After(d):
		t.Errorf("%s did not stop within %s of being cancelled", what, d)
		var zero T
		return zero, false
	}
}

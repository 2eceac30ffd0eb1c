package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// oneShotBackend answers one request per connection with 200 "ok" and
// closes the connection without announcing it (no Connection: close), as
// a server whose keep-alive timeout passed does. It counts connections.
func oneShotBackend(t *testing.T, conns *atomic.Int64) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
				if req.Method != "HEAD" {
					resp += "ok"
				}
				io.WriteString(c, resp)
			}()
		}
	}()
	return lis.Addr().String()
}

func TestH1ClientStaleConnection(t *testing.T) {
	tests := []struct {
		name   string
		method string
		want   int
		// wantConns is the least number of upstream connections.
		wantConns int64
	}{
		// The first request leaves a connection the backend closes; the
		// next ones find it dead and are sent again on a new one.
		{name: "GET sent again on a new connection", method: "GET", want: 200, wantConns: 3},
		{name: "HEAD sent again on a new connection", method: "HEAD", want: 200, wantConns: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nodemeta.RoleSidecar)
			var conns atomic.Int64
			addr := oneShotBackend(t, &conns)
			const c = "outbound|80||stale.default.svc.cluster.local"
			r.push(append(r.outboundHTTP(vhost("stale", []string{"stale"}, toCluster(prefixMatch("/"), c))),
				staticCluster(t, c, "stale.default.svc.cluster.local", []string{addr}))...)
			for i := range 3 {
				resp, _ := r.get(tt.method, "stale", "/", nil)
				if resp.StatusCode != tt.want {
					t.Fatalf("request %d: status %d; want %d", i, resp.StatusCode, tt.want)
				}
			}
			if got := conns.Load(); got < tt.wantConns {
				t.Errorf("%d upstream connections; want at least %d", got, tt.wantConns)
			}
		})
	}
}

func TestH1Eligible(t *testing.T) {
	tests := []struct {
		name   string
		method string
		body   io.Reader
		header map[string]string
		want   bool
	}{
		{name: "GET", method: "GET", want: true},
		{name: "HEAD", method: "HEAD", want: true},
		{name: "OPTIONS", method: "OPTIONS", want: true},
		{name: "POST without body", method: "POST", want: false},
		{name: "GET with body", method: "GET", body: strings.NewReader("x"), want: false},
		{name: "upgrade", method: "GET", header: map[string]string{"Upgrade": "websocket"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://example/", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if got := h1Eligible(req); got != tt.want {
				t.Errorf("h1Eligible = %v; want %v", got, tt.want)
			}
		})
	}
}

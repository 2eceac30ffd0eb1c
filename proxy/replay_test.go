package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

func TestReplayBody(t *testing.T) {
	big := strings.Repeat("x", maxBufferedBody+10)
	tests := []struct {
		name string
		body string
		// firstReads is how many bytes the first attempt reads before
		// the second starts; -1 for all.
		firstReads     int
		wantReplayable bool
	}{
		{name: "whole body read, then replayed", body: "payload", firstReads: -1, wantReplayable: true},
		{name: "part read, replay continues from the downstream body", body: "payload", firstReads: 3, wantReplayable: true},
		{name: "nothing read", body: "payload", firstReads: 0, wantReplayable: true},
		{name: "over the limit: not replayable", body: big, firstReads: -1, wantReplayable: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rb := &replayBody{src: io.NopCloser(strings.NewReader(tt.body))}
			first := rb.reader()
			var got []byte
			var err error
			if tt.firstReads < 0 {
				got, err = io.ReadAll(first)
			} else {
				got = make([]byte, tt.firstReads)
				_, err = io.ReadFull(first, got)
			}
			if err != nil {
				t.Fatalf("first attempt: %v", err)
			}
			if !strings.HasPrefix(tt.body, string(got)) {
				t.Fatalf("first attempt read %.20q; want a prefix of the body", got)
			}
			first.Close()
			if rb.replayable() != tt.wantReplayable {
				t.Fatalf("replayable = %v; want %v", rb.replayable(), tt.wantReplayable)
			}
			if _, err := first.Read(make([]byte, 1)); err != errBodyClosed {
				t.Errorf("read after close: %v; want errBodyClosed", err)
			}
			if !tt.wantReplayable {
				return
			}
			again, err := io.ReadAll(rb.reader())
			if err != nil || string(again) != tt.body {
				t.Errorf("replay read %.20q, %v; want the whole body", again, err)
			}
		})
	}
}

// TestRetryStreamsBody checks that a route with a retry policy streams a
// request body to the upstream instead of reading it whole first: the
// backend answers after the body's first bytes while the client still
// holds the rest.
func TestRetryStreamsBody(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	got := make(chan string, 1)
	b := echo(t, "b", func(w http.ResponseWriter, req *http.Request) bool {
		buf := make([]byte, 5)
		_, err := io.ReadFull(req.Body, buf)
		if err != nil {
			got <- err.Error()
			return false
		}
		got <- string(buf)
		io.Copy(io.Discard, req.Body)
		return false
	})
	const c = "outbound|80||stream.default.svc.cluster.local"
	rt := withRoute(toCluster(prefixMatch("/"), c), func(a *routev3.RouteAction) {
		a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,connect-failure", NumRetries: wrapperspb.UInt32(2)}
	})
	r.push(append(r.outboundHTTP(vhost("stream", []string{"stream"}, rt)),
		staticCluster(t, c, "stream.default.svc.cluster.local", []string{hostPort(b)}))...)

	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "http://"+r.out+"/", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "stream"
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := r.client.Do(req)
		if err != nil {
			t.Errorf("POST: %v", err)
			close(done)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp
	}()
	if _, err := io.WriteString(pw, "first"); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "first" {
			t.Errorf("backend read %q; want %q", s, "first")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw nothing while the client held the rest of the body: the proxy buffers it")
	}
	io.WriteString(pw, " and the rest")
	pw.Close()
	if resp := <-done; resp != nil && resp.StatusCode != 200 {
		t.Errorf("status %d; want 200", resp.StatusCode)
	}
}

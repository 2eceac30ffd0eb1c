package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// hangs reports whether a GET of url through client fails with a timeout
// (nothing answered within the client's timeout).
func hangs(t *testing.T, client *http.Client, url string) bool {
	t.Helper()
	resp, err := client.Get(url)
	if err == nil {
		resp.Body.Close()
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// poll waits until cond holds or fails after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		<-tick.C
	}
}

func TestBlackHole(t *testing.T) {
	b, err := NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	t.Run("accepts and never answers", func(t *testing.T) {
		client := &http.Client{Timeout: 200 * time.Millisecond}
		if !hangs(t, client, b.URL("/api/v1/query")) {
			t.Fatal("GET through the black hole did not time out")
		}
		if got := b.Accepted(); got != 1 {
			t.Errorf("Accepted() = %d; want 1", got)
		}
	})

	t.Run("Close releases a waiting client", func(t *testing.T) {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		poll(t, 5*time.Second, "connection held", func() bool { return b.Held() >= 1 })
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("read returned data from a black hole")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a client reading from the black hole was not released by Close")
		}
		if _, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
			t.Error("the black hole still accepts after Close")
		}
	})
}

func TestSwitch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	sw, err := NewSwitch("127.0.0.1:0", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	url := "http://" + sw.Addr() + "/"
	// One client keeps its connection alive across the steps, as go-git's
	// HTTP transport does: a swallowed pooled connection must hang too.
	client := &http.Client{Timeout: 300 * time.Millisecond}
	get := func() (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	steps := []struct {
		name     string
		mode     Mode
		wantHang bool
	}{
		{"passes through", Pass, false},
		{"hole swallows a pooled connection", Hole, true},
		{"hole swallows a new connection", Hole, true},
		{"pass again", Pass, false},
		{"hole again", Hole, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			sw.SetMode(st.mode)
			if got := sw.Mode(); got != st.mode {
				t.Fatalf("Mode() = %s; want %s", got, st.mode)
			}
			if st.wantHang {
				before := sw.Swallowed()
				if !hangs(t, client, url) {
					t.Fatal("GET did not time out in Hole mode")
				}
				if sw.Swallowed() <= before {
					t.Error("Swallowed() did not grow with a request sent into the hole")
				}
				return
			}
			got, err := get()
			if err != nil || got != "ok" {
				t.Fatalf("GET = %q, %v; want \"ok\"", got, err)
			}
			if n := sw.Held(); n != 0 {
				t.Errorf("Held() = %d in Pass mode; want the swallowed connections closed", n)
			}
		})
	}

	t.Run("Close releases swallowed clients", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		poll(t, 5*time.Second, "request swallowed", func() bool { return sw.Held() >= 1 })
		if err := sw.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a swallowed request got an answer")
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the request ran into its own deadline; Close did not release it: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Close did not release a swallowed request")
		}
	})
}

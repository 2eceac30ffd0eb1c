package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyPprof starts `gitmesh proxy --pprof-addr` (its controller
// unreachable: the proxy keeps retrying) and reads a heap profile from it,
// then stops the command.
func TestProxyPprof(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := dead.Addr().String()
	dead.Close()

	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"--log-level", "error", "proxy", "--xds", xdsAddr, "--id", "pprof-test", "--pprof-addr", addr})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the proxy command did not stop")
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		body, err := getText(ctx, "http://"+addr+"/debug/pprof/heap?debug=1")
		if err == nil {
			if !strings.Contains(body, "# runtime.MemStats") {
				t.Fatalf("heap profile: got %.200q; want MemStats", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading the heap profile: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the proxy command exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// getText returns the body of a 200 response to GET url.
func getText(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

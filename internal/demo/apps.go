package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// startApp starts a demo application on a free loopback port. reviews
// answers with its version; frontend calls reviews through its sidecar's
// outbound listener and reports what it got.
func startApp(ctx context.Context, wg *sync.WaitGroup, s service, outbound string) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("starting demo app %s: %w", s.id, err)
	}
	proxyURL := &url.URL{Scheme: "http", Host: outbound}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.name != "frontend" {
			fmt.Fprintf(w, "%s %s (%s)\n", s.name, s.version, s.id)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://reviews:9080/", nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "frontend: calling reviews: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		w.WriteHeader(resp.StatusCode)
		fmt.Fprintf(w, "frontend -> %s", body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve(lis)
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		_ = srv.Close()
	}()
	return lis.Addr().String(), nil
}

// waitReady polls the sidecars' /ready and a request through the outbound
// listener until all succeed or timeout passes.
func waitReady(ctx context.Context, admins []string, outbound string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	ok := func(url, host string) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, a := range admins {
			ready = ready && ok("http://"+a+"/ready", "")
		}
		if ready && ok("http://"+outbound+"/", "frontend") {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the sidecars did not become ready in time (see the logs)")
		case <-tick.C:
		}
	}
}

// lightTraffic sends a request through the frontend every interval, so the
// proxies' metrics have something to show and the rollout's analysis has
// requests to judge.
func lightTraffic(ctx context.Context, outbound string, interval time.Duration) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+outbound+"/", nil)
			req.Host = "frontend"
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
}

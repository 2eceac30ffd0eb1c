package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// observation is one response seen by the loader.
type observation struct {
	at     time.Time
	result string // the body, or "status N", or "error"
}

// loader sends a steady stream of requests for host through each proxy's
// outbound listener and records what every proxy answered, so tests can
// tell when each proxy switched config. It stops at test cleanup and after
// maxRequests per proxy.
type loader struct {
	mu  sync.Mutex // protects obs
	obs map[string][]observation
}

const maxRequestsPerProxy = 20000

// startLoad starts the loader over outbounds (node id -> outbound address).
func startLoad(t testing.TB, outbounds map[string]string, host string, every time.Duration) *loader {
	l := &loader{obs: map[string][]observation{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for id, out := range outbounds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 2 * time.Second}
			tick := time.NewTicker(every)
			defer tick.Stop()
			for range maxRequestsPerProxy {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+out+"/", nil)
				req.Host = host
				res := e2etest.Answer(client.Do(req))
				if strings.HasPrefix(res, "error: ") {
					res = "error"
				}
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				l.obs[id] = append(l.obs[id], observation{time.Now(), res})
				l.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return l
}

// first returns when proxy id first answered result (zero if never).
func (l *loader) first(id, result string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.obs[id] {
		if o.result == result {
			return o.at
		}
	}
	return time.Time{}
}

// firstAfter returns when proxy id first answered result after t.
func (l *loader) firstAfter(id, result string, t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.obs[id] {
		if o.at.After(t) && o.result == result {
			return o.at
		}
	}
	return time.Time{}
}

// latest returns proxy id's latest answer.
func (l *loader) latest(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o := l.obs[id]; len(o) > 0 {
		return o[len(o)-1].result
	}
	return ""
}

package bench

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// openLoop is the result of an open-loop run.
type openLoop struct {
	sent, errors int
	rps          float64
	latMS        []float64 // per successful request, from its scheduled time
}

// newClient returns an HTTP client for proto ("http1" keeps up to 64
// connections; "h2c" multiplexes over one prior-knowledge connection).
func newClient(proto string) *http.Client {
	t := &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		// Never negotiate or proxy: loopback, plain text.
		TLSClientConfig: &tls.Config{}, Proxy: nil,
	}
	if proto == "h2c" {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: t, Timeout: 5 * time.Second}
}

// runOpenLoop sends rate requests per second to url (with host as the
// Host header) for d after a warm-up of warm, each at its scheduled time
// whatever the previous ones are doing, and measures each latency from the
// time it was scheduled, not sent, so a stall counts against every request
// it delayed (no coordinated omission). At most 1,000 requests are in
// flight; one that cannot start counts as an error.
func runOpenLoop(ctx context.Context, proto, url, host string, rate int, warm, d time.Duration) openLoop {
	client := newClient(proto)
	defer client.CloseIdleConnections()
	interval := time.Second / time.Duration(rate)
	total := int((warm + d) / interval)
	warmN := int(warm / interval)
	var (
		mu  sync.Mutex // protects res
		res openLoop
		wg  sync.WaitGroup
	)
	slots := make(chan struct{}, 1000)
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return res
			case <-time.After(w):
			}
		}
		measured := i >= warmN
		select {
		case slots <- struct{}{}:
		default:
			if measured {
				mu.Lock()
				res.sent++
				res.errors++
				mu.Unlock()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			ok := get(ctx, client, url, host)
			lat := time.Since(at)
			if !measured {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			res.sent++
			if !ok {
				res.errors++
				return
			}
			res.latMS = append(res.latMS, ms(lat))
		}()
	}
	wg.Wait()
	res.rps = float64(len(res.latMS)) / d.Seconds()
	return res
}

// get sends one GET and reads the whole body; it reports a 200.
func get(ctx context.Context, client *http.Client, url, host string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}

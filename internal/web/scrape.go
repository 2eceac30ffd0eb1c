package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/xds"
)

// Limits of a fleet scrape.
const (
	// maxMetricsBytes caps one proxy's /metrics page.
	maxMetricsBytes = 32 << 20
	// maxConcurrentScrapes is how many proxies are scraped at once.
	maxConcurrentScrapes = 32
)

// accept asks for the protobuf exposition format first (cheaper to
// decode) and takes the text format too, as Prometheus does.
const accept = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,` +
	`text/plain;version=0.0.4;q=0.3,*/*;q=0.1`

// scrape is the request counters of the fleet at one time.
type scrape struct {
	at time.Time
	// byProxy holds each scraped proxy's counters by its node id.
	byProxy map[string]counts
	// errs name the proxies that could not be scraped.
	errs []string
}

// scrapeFleet scrapes the /metrics of every connected node with an admin
// address, at most maxConcurrentScrapes at a time, within ctx.
func scrapeFleet(ctx context.Context, client *http.Client, nodes []xds.NodeStatus) scrape {
	type result struct {
		id  string
		c   counts
		err error
	}
	var targets []xds.NodeStatus
	for _, n := range nodes {
		if n.Connected && n.Workload.Admin != "" {
			targets = append(targets, n)
		}
	}
	results := make([]result, len(targets))
	sem := make(chan struct{}, maxConcurrentScrapes)
	var wg sync.WaitGroup
	for i, n := range targets {
		wg.Go(func() {
			results[i].id = n.Workload.ID
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				results[i].err = ctx.Err()
				return
			}
			results[i].c, results[i].err = scrapeProxy(ctx, client, n.Workload.Admin)
		})
	}
	wg.Wait()
	s := scrape{at: time.Now(), byProxy: make(map[string]counts, len(results))}
	for _, r := range results {
		if r.err != nil {
			s.errs = append(s.errs, fmt.Sprintf("%s: %v", r.id, r.err))
			continue
		}
		s.byProxy[r.id] = r.c
	}
	sort.Strings(s.errs)
	return s
}

// scrapeProxy reads the request counters of the proxy whose admin
// endpoint is adminAddr (host:port or a base URL).
func scrapeProxy(ctx context.Context, client *http.Client, adminAddr string) (counts, error) {
	u := adminAddr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimSuffix(u, "/") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("scraping %s: %s", u, resp.Status)
	}
	c, err := parseCounts(io.LimitReader(resp.Body, maxMetricsBytes), expfmt.ResponseFormat(resp.Header))
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	return c, nil
}

// window keeps the scrapes of the last span, oldest first; rates are
// computed between the newest and the oldest of each proxy.
type window struct {
	span time.Duration
	// scrapes are oldest first; the newest is always kept.
	scrapes []scrape
}

// add appends s and drops the scrapes it no longer needs: those within
// span before it, plus the newest one older than that (so a window is
// about span long), unless that one is older than twice span (after a
// quiet spell, rates over a long-gone past would mislead).
func (w *window) add(s scrape) {
	w.scrapes = append(w.scrapes, s)
	n := len(w.scrapes)
	first := n - 1
	for i := n - 2; i >= 0; i-- {
		age := s.at.Sub(w.scrapes[i].at)
		if age > 2*w.span {
			break
		}
		first = i
		if age >= w.span {
			break
		}
	}
	w.scrapes = append(w.scrapes[:0], w.scrapes[first:]...)
}

// last returns when the newest scrape was taken (zero for none).
func (w *window) last() time.Time {
	if len(w.scrapes) == 0 {
		return time.Time{}
	}
	return w.scrapes[len(w.scrapes)-1].at
}

// graph computes the graph of the window: each proxy's counters in the
// newest scrape against its oldest in the window (a counter that went
// down, a restarted proxy, counts from zero). With a single scrape, the
// graph carries cumulative counts and no rates.
func (w *window) graph() admin.Graph {
	if len(w.scrapes) == 0 {
		return buildGraph(nil)
	}
	newest := w.scrapes[len(w.scrapes)-1]
	traffic := map[seriesKey]flow{}
	var span time.Duration
	for id, now := range newest.byProxy {
		var base *scrape
		for i := range w.scrapes[:len(w.scrapes)-1] {
			if _, ok := w.scrapes[i].byProxy[id]; ok {
				base = &w.scrapes[i]
				break
			}
		}
		if base == nil && len(w.scrapes) > 1 {
			continue // a proxy first seen now: its rate is not known yet
		}
		var secs float64
		if base != nil {
			secs = newest.at.Sub(base.at).Seconds()
			span = max(span, newest.at.Sub(base.at))
		}
		for k, v := range now {
			d := v
			if base != nil {
				if was := base.byProxy[id][k]; v >= was {
					d = v - was
				}
			}
			f := traffic[k]
			f.requests += d
			if secs > 0 {
				f.rate += d / secs
			}
			traffic[k] = f
		}
	}
	g := buildGraph(traffic)
	g.Time = newest.at.UTC()
	g.WindowSeconds = span.Seconds()
	g.Proxies = len(newest.byProxy)
	g.Errors = newest.errs
	return g
}

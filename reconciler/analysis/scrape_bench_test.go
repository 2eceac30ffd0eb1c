package analysis_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/gitmesh/gitmesh/reconciler/analysis"
)

// BenchmarkScrape scrapes and parses a realistic proxy /metrics page over
// loopback: 50 request series (istio_requests_total and its histogram of
// 20 buckets each), half of them inbound, plus an unrelated counter.
func BenchmarkScrape(b *testing.B) {
	p := newFakeProxy(b, "frontend-1")
	benchmarkScrape(b, p, p.addr())
}

func benchmarkScrape(b *testing.B, p *fakeProxy, addr string) {
	codes := []string{"200", "201", "404", "503", "0"}
	for i := range 50 {
		reporter := "source"
		if i%2 == 1 {
			reporter = "destination"
		}
		p.serve(i+1, reporter, "svc-"+strconv.Itoa(i/10), "v"+strconv.Itoa(i%3), codes[i%len(codes)], float64(i*37%2000))
	}
	ctx, client := context.Background(), p.srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		s, err := analysis.Scrape(ctx, client, addr)
		if err != nil {
			b.Fatal(err)
		}
		if s.Requests == 0 {
			b.Fatal("no requests parsed")
		}
	}
}

// BenchmarkScrapeText is BenchmarkScrape with a proxy that only speaks
// the text format.
func BenchmarkScrapeText(b *testing.B) {
	p := newFakeProxy(b, "frontend-1")
	benchmarkScrape(b, p, p.textAddr())
}

package analysis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The proxy's request metrics (docs/xds-conventions.md, proxy/metrics.go).
const (
	requestsMetric = "istio_requests_total"
	durationMetric = "istio_request_duration_milliseconds"
	// reporterSource marks what a proxy sends out: the traffic its routing
	// configuration decides, which is what a rollout changes.
	reporterSource = "source"
)

// Limits of a scrape.
const (
	// maxMetricsBytes caps a /metrics page; a proxy's is a few hundred KiB
	// at most.
	maxMetricsBytes = 32 << 20
	// MaxConcurrentScrapes is how many proxies ScrapeAll scrapes at once.
	MaxConcurrentScrapes = 64
)

// accept asks for the protobuf exposition format first (what Prometheus
// itself asks for: decoding it is an order of magnitude cheaper than
// parsing text, see BenchmarkScrape) and takes the text format too.
const accept = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,` +
	`text/plain;version=0.0.4;q=0.3,*/*;q=0.1`

// Scrape fetches http://<adminAddr>/metrics from a proxy's admin endpoint
// (in the protobuf or text exposition format, whichever the proxy offers)
// and sums its istio_requests_total and istio_request_duration_milliseconds
// series with reporter="source" (the requests the proxy sent out) over all
// other labels; a response_code of 5xx counts as a failure. adminAddr is
// host:port or a base URL (http://host:port). If client is nil,
// http.DefaultClient is used; ctx bounds the whole scrape, so give it a
// deadline shorter than the analysis interval.
//
// A proxy that has served no request yet yields a zero Sample.
func Scrape(ctx context.Context, client *http.Client, adminAddr string) (Sample, error) {
	if client == nil {
		client = http.DefaultClient
	}
	u := adminAddr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimSuffix(u, "/") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Sample{}, fmt.Errorf("scraping %s: %w", adminAddr, err)
	}
	req.Header.Set("Accept", accept)
	// Spare the proxy compressing its page: it serves traffic, and the
	// controller is near.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return Sample{}, fmt.Errorf("scraping %s: %w", adminAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return Sample{}, fmt.Errorf("scraping %s: %s", u, resp.Status)
	}
	s, err := parse(io.LimitReader(resp.Body, maxMetricsBytes), expfmt.ResponseFormat(resp.Header))
	if err != nil {
		return Sample{}, fmt.Errorf("scraping %s: %w", u, err)
	}
	return s, nil
}

// ScrapeAll scrapes every address concurrently (at most
// MaxConcurrentScrapes at a time) and returns the samples by address. A
// proxy that cannot be scraped is missing from the map and named in the
// error, which joins one error per such address; the samples of the
// others are returned all the same. Duplicate addresses are scraped once.
func ScrapeAll(ctx context.Context, client *http.Client, addrs []string) (map[string]Sample, error) {
	addrs = slices.Compact(slices.Sorted(slices.Values(addrs)))
	type result struct {
		sample Sample
		err    error
	}
	results := make([]result, len(addrs))
	sem := make(chan struct{}, MaxConcurrentScrapes)
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				results[i].err = fmt.Errorf("scraping %s: %w", addr, ctx.Err())
				return
			}
			results[i].sample, results[i].err = Scrape(ctx, client, addr)
		})
	}
	wg.Wait()
	samples := make(map[string]Sample, len(addrs))
	var errs []error
	for i, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		samples[addrs[i]] = r.sample
	}
	return samples, errors.Join(errs...)
}

// parse reads a /metrics page in format: delimited protobuf, or else the
// Prometheus text format.
func parse(r io.Reader, format expfmt.Format) (Sample, error) {
	var s Sample
	if format.FormatType() == expfmt.TypeProtoDelim {
		dec := expfmt.NewDecoder(r, format)
		var mf dto.MetricFamily
		for {
			err := dec.Decode(&mf)
			if errors.Is(err, io.EOF) {
				return s, nil
			}
			if err != nil {
				return Sample{}, fmt.Errorf("decoding metrics: %w", err)
			}
			s.count(&mf)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, fmt.Errorf("parsing metrics: %w", err)
	}
	s.count(families[requestsMetric])
	s.count(families[durationMetric])
	return s, nil
}

// count adds the reporter="source" series of mf to s if mf is one of the
// request metrics.
func (s *Sample) count(mf *dto.MetricFamily) {
	switch {
	case mf == nil:
	case mf.GetName() == requestsMetric:
		for _, m := range mf.GetMetric() {
			if label(m, "reporter") != reporterSource {
				continue
			}
			v := m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			s.Requests += v
			if is5xx(label(m, "response_code")) {
				s.Failures += v
			}
		}
	case mf.GetName() == durationMetric && mf.GetType() == dto.MetricType_HISTOGRAM:
		for _, m := range mf.GetMetric() {
			if label(m, "reporter") != reporterSource || m.GetHistogram() == nil {
				continue
			}
			s.Buckets = addBuckets(s.Buckets, histogramBuckets(m.GetHistogram()))
		}
	}
}

// histogramBuckets returns h's cumulative buckets, ending with +Inf.
func histogramBuckets(h *dto.Histogram) []Bucket {
	out := make([]Bucket, 0, len(h.GetBucket())+1)
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		out = append(out, Bucket{UpperBound: b.GetUpperBound(), Count: c})
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmp.Compare(a.UpperBound, b.UpperBound) })
	if n := len(out); n == 0 || !math.IsInf(out[n-1].UpperBound, +1) {
		count := float64(h.GetSampleCount())
		if h.SampleCountFloat != nil {
			count = h.GetSampleCountFloat()
		}
		out = append(out, Bucket{UpperBound: math.Inf(+1), Count: count})
	}
	return out
}

// addBuckets adds src to dst, in place when their bounds match (the
// common case: one proxy, one bucket layout).
func addBuckets(dst, src []Bucket) []Bucket {
	if len(dst) == 0 {
		return src
	}
	if !sameBounds(dst, src) {
		return Sample{Buckets: dst}.Add(Sample{Buckets: src}).Buckets
	}
	for i := range dst {
		dst[i].Count += src[i].Count
	}
	return dst
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// is5xx reports whether an HTTP status code label is 500-599.
func is5xx(code string) bool {
	return len(code) == 3 && code[0] == '5' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9'
}

package analysis_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
)

func ptr(v float64) *float64 { return &v }

// traffic is n requests of which failed answered 5xx, all in the latency
// bucket whose upper bound is le (10, 100, 250, 500 or 1000 ms).
func traffic(n, failed, le float64) analysis.Sample {
	bounds := []float64{10, 100, 250, 500, 1000, inf}
	s := analysis.Sample{Requests: n, Failures: failed}
	for _, b := range bounds {
		c := 0.0
		if b >= le {
			c = n
		}
		s.Buckets = append(s.Buckets, analysis.Bucket{UpperBound: b, Count: c})
	}
	return s
}

// checkCase is one metric checked alone against one input.
type checkCase struct {
	name        string
	metric      v1alpha1.Metric
	minRequests int64
	in          analysis.Input
	want        analysis.Reading
}

// checkOne runs Check for tc's metric and returns its one reading.
func checkOne(t *testing.T, tc checkCase) analysis.Reading {
	t.Helper()
	a := v1alpha1.Analysis{MinRequests: tc.minRequests, Metrics: []v1alpha1.Metric{tc.metric}}
	got := analysis.Check(context.Background(), a, tc.in, nil)
	if len(got) != 1 {
		t.Fatalf("got %d readings; want 1: %+v", len(got), got)
	}
	return got[0]
}

func TestCheckSuccessRate(t *testing.T) {
	tests := []checkCase{
		{
			name:   "pass",
			metric: v1alpha1.Metric{Name: "request-success-rate", Min: ptr(99)},
			in:     analysis.Input{Wave: traffic(1000, 5, 100)},
			want:   analysis.Reading{Metric: "request-success-rate", Value: 99.5, Unit: "%", Threshold: ">= 99%", Requests: 1000, Result: analysis.Pass},
		},
		{
			name:   "fail",
			metric: v1alpha1.Metric{Name: "request-success-rate", Min: ptr(99)},
			in:     analysis.Input{Wave: traffic(40, 10, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Value: 75, Unit: "%", Threshold: ">= 99%", Requests: 40, Result: analysis.Fail,
				Message: "success rate 75% is below 99%"},
		},
		{
			name:        "too few requests",
			metric:      v1alpha1.Metric{Name: "request-success-rate", Min: ptr(99)},
			minRequests: 20,
			in:          analysis.Input{Wave: traffic(3, 3, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Unit: "%", Threshold: ">= 99%", Requests: 3, Result: analysis.Inconclusive,
				Message: "3 requests through the wave, fewer than minRequests 20"},
		},
		{
			name:   "no requests",
			metric: v1alpha1.Metric{Name: "request-success-rate", Min: ptr(99)},
			want: analysis.Reading{Metric: "request-success-rate", Unit: "%", Threshold: ">= 99%", Result: analysis.Inconclusive,
				Message: "no requests through the wave"},
		},
		{
			name:   "baseline fail",
			metric: v1alpha1.Metric{Name: "request-success-rate", Baseline: &v1alpha1.Baseline{MaxDrop: ptr(2)}},
			in:     analysis.Input{Wave: traffic(100, 3, 100), Baseline: traffic(200, 1, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Value: 97, Unit: "%", Threshold: ">= 97.5% (baseline 99.5% - 2)",
				Baseline: ptr(99.5), Requests: 100, Result: analysis.Fail,
				Message: "success rate 97% is more than 2 points below the baseline's 99.5%"},
		},
		{
			name:   "baseline and min both checked",
			metric: v1alpha1.Metric{Name: "request-success-rate", Min: ptr(90), Baseline: &v1alpha1.Baseline{MaxDrop: ptr(5)}},
			in:     analysis.Input{Wave: traffic(100, 3, 100), Baseline: traffic(200, 1, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Value: 97, Unit: "%", Threshold: ">= 90%, >= 94.5% (baseline 99.5% - 5)",
				Baseline: ptr(99.5), Requests: 100, Result: analysis.Pass},
		},
		{
			name:        "baseline skipped with too few requests",
			metric:      v1alpha1.Metric{Name: "request-success-rate", Min: ptr(90), Baseline: &v1alpha1.Baseline{MaxDrop: ptr(1)}},
			minRequests: 10,
			in:          analysis.Input{Wave: traffic(100, 3, 100), Baseline: traffic(5, 0, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Value: 97, Unit: "%", Threshold: ">= 90%, baseline - 1",
				Requests: 100, Result: analysis.Pass, Message: "baseline skipped: 5 requests through the baseline proxies, need 10"},
		},
		{
			name:   "baseline only, no baseline proxies (last wave)",
			metric: v1alpha1.Metric{Name: "request-success-rate", Baseline: &v1alpha1.Baseline{MaxDrop: ptr(1)}},
			in:     analysis.Input{Wave: traffic(100, 50, 100)},
			want: analysis.Reading{Metric: "request-success-rate", Value: 50, Unit: "%", Threshold: "baseline - 1",
				Requests: 100, Result: analysis.Pass, Message: "baseline skipped: 0 requests through the baseline proxies, need 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkOne(t, tt); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckDuration(t *testing.T) {
	ms500 := v1alpha1.Duration{Duration: 500 * time.Millisecond}
	tests := []checkCase{
		{
			name:   "pass",
			metric: v1alpha1.Metric{Name: "request-duration", MaxP99: ms500},
			in:     analysis.Input{Wave: traffic(100, 0, 250)}, // p99 248.5ms
			want:   analysis.Reading{Metric: "request-duration", Value: 248.5, Unit: "ms", Threshold: "<= 500ms", Requests: 100, Result: analysis.Pass},
		},
		{
			name:   "fail",
			metric: v1alpha1.Metric{Name: "request-duration", MaxP99: ms500},
			in:     analysis.Input{Wave: traffic(100, 0, 1000)}, // p99 995ms
			want: analysis.Reading{Metric: "request-duration", Value: 995, Unit: "ms", Threshold: "<= 500ms", Requests: 100, Result: analysis.Fail,
				Message: "p99 995ms is above 500ms"},
		},
		{
			name:        "too few requests",
			metric:      v1alpha1.Metric{Name: "request-duration", MaxP99: ms500, Baseline: &v1alpha1.Baseline{MaxRatio: ptr(1.5)}},
			minRequests: 5,
			in:          analysis.Input{Wave: traffic(4, 0, 1000)},
			want: analysis.Reading{Metric: "request-duration", Unit: "ms", Threshold: "<= 500ms, baseline x 1.5", Requests: 4, Result: analysis.Inconclusive,
				Message: "4 requests through the wave, fewer than minRequests 5"},
		},
		{
			name:   "requests but no histogram",
			metric: v1alpha1.Metric{Name: "request-duration", MaxP99: ms500},
			in:     analysis.Input{Wave: analysis.Sample{Requests: 10}},
			want: analysis.Reading{Metric: "request-duration", Unit: "ms", Threshold: "<= 500ms", Requests: 10, Result: analysis.Inconclusive,
				Message: "no request latency recorded for the wave"},
		},
		{
			name:   "baseline fail",
			metric: v1alpha1.Metric{Name: "request-duration", Baseline: &v1alpha1.Baseline{MaxRatio: ptr(1.5)}},
			in:     analysis.Input{Wave: traffic(100, 0, 500), Baseline: traffic(100, 0, 250)}, // 497.5 vs 248.5
			want: analysis.Reading{Metric: "request-duration", Value: 497.5, Unit: "ms", Threshold: "<= 372.75ms (baseline 248.5ms x 1.5)",
				Baseline: ptr(248.5), Requests: 100, Result: analysis.Fail,
				Message: "p99 497.5ms is more than 1.5 times the baseline's 248.5ms"},
		},
		{
			name:   "within maxP99 but over the baseline ratio",
			metric: v1alpha1.Metric{Name: "request-duration", MaxP99: ms500, Baseline: &v1alpha1.Baseline{MaxRatio: ptr(2.5)}},
			in:     analysis.Input{Wave: traffic(100, 0, 250), Baseline: traffic(100, 0, 100)}, // 248.5 vs 99.1
			want: analysis.Reading{Metric: "request-duration", Value: 248.5, Unit: "ms", Threshold: "<= 500ms, <= 247.75ms (baseline 99.1ms x 2.5)",
				Baseline: ptr(99.1), Requests: 100, Result: analysis.Fail,
				Message: "p99 248.5ms is more than 2.5 times the baseline's 99.1ms"},
		},
		{
			name:        "baseline skipped",
			metric:      v1alpha1.Metric{Name: "request-duration", MaxP99: ms500, Baseline: &v1alpha1.Baseline{MaxRatio: ptr(1.5)}},
			minRequests: 10,
			in:          analysis.Input{Wave: traffic(100, 0, 250), Baseline: traffic(9, 0, 10)},
			want: analysis.Reading{Metric: "request-duration", Value: 248.5, Unit: "ms", Threshold: "<= 500ms, baseline x 1.5",
				Requests: 100, Result: analysis.Pass, Message: "baseline skipped: 9 requests through the baseline proxies, need 10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkOne(t, tt)
			// Compare values rounded to the microsecond, as they are printed.
			round := func(p *float64) {
				if p != nil {
					*p = math.Round(*p*1000) / 1000
				}
			}
			round(&got.Value)
			round(got.Baseline)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

// querierFunc adapts a function to analysis.Querier.
type querierFunc func(ctx context.Context, address, promql string) (float64, error)

func (f querierFunc) Query(ctx context.Context, address, promql string) (float64, error) {
	return f(ctx, address, promql)
}

var _ analysis.Querier = querierFunc(nil)

func TestCheckPrometheus(t *testing.T) {
	const addr = "http://prometheus:9090"
	answer := func(v float64, err error) analysis.Querier {
		return querierFunc(func(context.Context, string, string) (float64, error) { return v, err })
	}
	metric := func(min, max *float64) v1alpha1.Metric {
		return v1alpha1.Metric{Name: "error-budget", Min: min, Max: max,
			Prometheus: &v1alpha1.PrometheusQuery{Address: addr, Query: `sum(up{node=~"{{wave_nodes}}"})`}}
	}
	tests := []struct {
		name   string
		metric v1alpha1.Metric
		q      analysis.Querier
		nodes  []string
		want   analysis.Reading
	}{
		{
			name: "pass", metric: metric(ptr(1), ptr(5)), q: answer(3, nil), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Value: 3, Threshold: ">= 1, <= 5", Result: analysis.Pass},
		},
		{
			name: "below min", metric: metric(ptr(1), nil), q: answer(0.5, nil), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Value: 0.5, Threshold: ">= 1", Result: analysis.Fail, Message: "0.5 is below 1"},
		},
		{
			name: "above max", metric: metric(nil, ptr(5)), q: answer(7, nil), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Value: 7, Threshold: "<= 5", Result: analysis.Fail, Message: "7 is above 5"},
		},
		{
			name: "error is inconclusive", metric: metric(nil, ptr(5)), q: answer(0, errors.New("connection refused")), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Threshold: "<= 5", Result: analysis.Inconclusive,
				Message: `connection refused (query: sum(up{node=~"a"}))`},
		},
		{
			name: "NaN is inconclusive", metric: metric(nil, ptr(5)), q: answer(math.NaN(), nil), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Value: math.NaN(), Threshold: "<= 5", Result: analysis.Inconclusive,
				Message: `query returned NaN, e.g. a ratio with no traffic (query: sum(up{node=~"a"}))`},
		},
		{
			name: "no wave nodes", metric: metric(nil, ptr(5)), q: answer(1, nil),
			want: analysis.Reading{Metric: "error-budget", Threshold: "<= 5", Result: analysis.Inconclusive,
				Message: "query uses {{wave_nodes}} but the wave has no nodes"},
		},
		{
			name: "no querier", metric: metric(nil, ptr(5)), nodes: []string{"a"},
			want: analysis.Reading{Metric: "error-budget", Threshold: "<= 5", Result: analysis.Inconclusive, Message: "no Prometheus querier configured"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := v1alpha1.Analysis{Metrics: []v1alpha1.Metric{tt.metric}}
			got := analysis.Check(context.Background(), a, analysis.Input{WaveNodes: tt.nodes}, tt.q)
			if len(got) != 1 {
				t.Fatalf("got %d readings; want 1", len(got))
			}
			g, w := got[0], tt.want
			if math.IsNaN(g.Value) && math.IsNaN(w.Value) {
				g.Value, w.Value = 0, 0
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("got %+v; want %+v", g, w)
			}
		})
	}
}

// TestCheckQueriesConcurrently checks that Prometheus metrics are queried
// in parallel and readings keep the metrics' order.
func TestCheckQueriesConcurrently(t *testing.T) {
	const n = 4
	var (
		mu      sync.Mutex
		started int
		all     = make(chan struct{})
	)
	q := querierFunc(func(ctx context.Context, _, promql string) (float64, error) {
		mu.Lock()
		started++
		if started == n {
			close(all)
		}
		mu.Unlock()
		select { // every query waits for the others: serial queries would time out
		case <-all:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return float64(len(promql)), nil
	})
	a := v1alpha1.Analysis{}
	for i := range n {
		a.Metrics = append(a.Metrics, v1alpha1.Metric{Name: "q", Max: ptr(100),
			Prometheus: &v1alpha1.PrometheusQuery{Address: "http://p", Query: strings.Repeat("x", i+1)}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := analysis.Check(ctx, a, analysis.Input{}, q)
	for i, r := range got {
		if r.Result != analysis.Pass || r.Value != float64(i+1) {
			t.Errorf("reading %d: got %v; want pass with value %d", i, r, i+1)
		}
	}
}

func TestCheckMixed(t *testing.T) {
	a := v1alpha1.Analysis{MinRequests: 3, Metrics: []v1alpha1.Metric{
		{Name: "request-success-rate", Min: ptr(99)},
		{Name: "request-duration", MaxP99: v1alpha1.Duration{Duration: 500 * time.Millisecond}},
	}}
	got := analysis.Check(context.Background(), a, analysis.Input{Wave: traffic(10, 1, 100)}, nil)
	if len(got) != 2 || got[0].Result != analysis.Fail || got[1].Result != analysis.Pass {
		t.Fatalf("got %v; want fail, pass", got)
	}
	if v := analysis.Verdict(got); v != analysis.Fail {
		t.Errorf("verdict: got %v; want %v", v, analysis.Fail)
	}
	want := "request-success-rate 90% (>= 99%): fail: success rate 90% is below 99%"
	if s := got[0].String(); s != want {
		t.Errorf("got %q; want %q", s, want)
	}
}

func TestVerdict(t *testing.T) {
	r := func(results ...analysis.Result) []analysis.Reading {
		out := make([]analysis.Reading, len(results))
		for i, res := range results {
			out[i] = analysis.Reading{Result: res}
		}
		return out
	}
	tests := []struct {
		name     string
		readings []analysis.Reading
		want     analysis.Result
	}{
		{"no metrics", nil, analysis.Pass},
		{"all pass", r(analysis.Pass, analysis.Pass), analysis.Pass},
		{"one inconclusive", r(analysis.Pass, analysis.Inconclusive), analysis.Inconclusive},
		{"fail wins over inconclusive", r(analysis.Inconclusive, analysis.Fail, analysis.Pass), analysis.Fail},
		{"unknown result is inconclusive", r(analysis.Pass, ""), analysis.Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := analysis.Verdict(tt.readings); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestExpandQuery(t *testing.T) {
	tests := []struct {
		name     string
		query    string
		nodes    []string
		revision string
		want     string
	}{
		{
			name:  "nodes",
			query: `sum(x{node=~"{{wave_nodes}}"})`, nodes: []string{"reviews-v2-1", "reviews-v2-2"},
			want: `sum(x{node=~"reviews-v2-1|reviews-v2-2"})`,
		},
		{
			name:  "regex characters are quoted, then escaped for the string",
			query: `x{node=~"{{wave_nodes}}"}`, nodes: []string{"a.b", "c+d"},
			want: `x{node=~"a\\.b|c\\+d"}`,
		},
		{
			name:  "revision",
			query: `x{rev="{{revision}}"} and y{node=~"{{wave_nodes}}"}`, nodes: []string{"n"}, revision: "main@sha1:3f2c",
			want: `x{rev="main@sha1:3f2c"} and y{node=~"n"}`,
		},
		{
			name:  "quotes are escaped",
			query: `x{rev="{{revision}}"}`, revision: `we"ird`,
			want: `x{rev="we\"ird"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := analysis.ExpandQuery(tt.query, tt.nodes, tt.revision); got != tt.want {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}
}

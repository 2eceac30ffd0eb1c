package analysis_test

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/reconciler/analysis"
)

var inf = math.Inf(+1)

// hist builds cumulative buckets from bound/count pairs.
func hist(pairs ...float64) []analysis.Bucket {
	out := make([]analysis.Bucket, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, analysis.Bucket{UpperBound: pairs[i], Count: pairs[i+1]})
	}
	return out
}

func TestSampleSub(t *testing.T) {
	tests := []struct {
		name      string
		now, then analysis.Sample
		want      analysis.Sample
	}{
		{
			name: "delta",
			now:  analysis.Sample{Requests: 10, Failures: 3, Buckets: hist(100, 8, inf, 10)},
			then: analysis.Sample{Requests: 4, Failures: 1, Buckets: hist(100, 4, inf, 4)},
			want: analysis.Sample{Requests: 6, Failures: 2, Buckets: hist(100, 4, inf, 6)},
		},
		{
			name: "from zero",
			now:  analysis.Sample{Requests: 10, Failures: 3, Buckets: hist(100, 8, inf, 10)},
			want: analysis.Sample{Requests: 10, Failures: 3, Buckets: hist(100, 8, inf, 10)},
		},
		{
			name: "requests reset means restart",
			now:  analysis.Sample{Requests: 2, Buckets: hist(100, 2, inf, 2)},
			then: analysis.Sample{Requests: 4, Buckets: hist(100, 4, inf, 4)},
			want: analysis.Sample{Requests: 2, Buckets: hist(100, 2, inf, 2)},
		},
		{
			name: "bucket reset means restart",
			now:  analysis.Sample{Requests: 5, Buckets: hist(100, 1, inf, 5)},
			then: analysis.Sample{Requests: 4, Buckets: hist(100, 4, inf, 4)},
			want: analysis.Sample{Requests: 5, Buckets: hist(100, 1, inf, 5)},
		},
		{
			name: "other bucket layout means restart",
			now:  analysis.Sample{Requests: 5, Buckets: hist(50, 1, inf, 5)},
			then: analysis.Sample{Requests: 4, Buckets: hist(100, 4, inf, 4)},
			want: analysis.Sample{Requests: 5, Buckets: hist(50, 1, inf, 5)},
		},
		{
			name: "histogram appeared since",
			now:  analysis.Sample{Requests: 5, Buckets: hist(100, 1, inf, 1)},
			then: analysis.Sample{Requests: 4},
			want: analysis.Sample{Requests: 1, Buckets: hist(100, 1, inf, 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.now.Sub(tt.then); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestSampleAdd(t *testing.T) {
	tests := []struct {
		name string
		a, b analysis.Sample
		want analysis.Sample
	}{
		{
			name: "same buckets",
			a:    analysis.Sample{Requests: 1, Failures: 1, Buckets: hist(100, 1, inf, 1)},
			b:    analysis.Sample{Requests: 2, Buckets: hist(100, 1, inf, 2)},
			want: analysis.Sample{Requests: 3, Failures: 1, Buckets: hist(100, 2, inf, 3)},
		},
		{
			name: "zero and sample",
			b:    analysis.Sample{Requests: 2, Buckets: hist(100, 1, inf, 2)},
			want: analysis.Sample{Requests: 2, Buckets: hist(100, 1, inf, 2)},
		},
		{
			name: "different buckets merge on the union",
			a:    analysis.Sample{Requests: 4, Buckets: hist(10, 1, 100, 3, inf, 4)},
			b:    analysis.Sample{Requests: 2, Buckets: hist(50, 2, inf, 2)},
			want: analysis.Sample{Requests: 6, Buckets: hist(10, 1, 50, 3, 100, 5, inf, 6)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Add(tt.b); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	start := map[string]analysis.Sample{
		"a": {Requests: 10, Failures: 1, Buckets: hist(100, 10, inf, 10)},
		"b": {Requests: 50, Buckets: hist(100, 50, inf, 50)},
	}
	now := map[string]analysis.Sample{
		"a": {Requests: 15, Failures: 2, Buckets: hist(100, 14, inf, 15)}, // +5, 1 failure, 1 slow
		"b": {Requests: 3, Buckets: hist(100, 3, inf, 3)},                 // restarted: 3
		"c": {Requests: 2, Failures: 2, Buckets: hist(100, 0, inf, 2)},    // new: everything
	}
	want := analysis.Sample{Requests: 10, Failures: 3, Buckets: hist(100, 7, inf, 10)}
	if got := analysis.Delta(now, start); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestSuccessRate(t *testing.T) {
	tests := []struct {
		name   string
		s      analysis.Sample
		want   float64
		wantOK bool
	}{
		{"no requests", analysis.Sample{}, 0, false},
		{"all good", analysis.Sample{Requests: 10}, 100, true},
		{"one in four fails", analysis.Sample{Requests: 4, Failures: 1}, 75, true},
		{"all fail", analysis.Sample{Requests: 3, Failures: 3}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.SuccessRate()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestQuantile checks histogram_quantile's arithmetic on known histograms
// (the expected values are what Prometheus returns for them).
func TestQuantile(t *testing.T) {
	istio := func(counts ...float64) []analysis.Bucket { // Istio's first buckets, then +Inf
		bounds := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000}
		out := make([]analysis.Bucket, 0, len(bounds)+1)
		for i, b := range bounds {
			out = append(out, analysis.Bucket{UpperBound: b, Count: counts[i]})
		}
		return append(out, analysis.Bucket{UpperBound: inf, Count: counts[len(counts)-1]})
	}
	tests := []struct {
		name    string
		buckets []analysis.Bucket
		q       float64
		want    time.Duration
		wantOK  bool
	}{
		{
			// 100 requests in (100, 250]: rank 99 is 99% into the bucket.
			name:    "all in one bucket",
			buckets: istio(0, 0, 0, 0, 0, 0, 0, 100, 100, 100, 100),
			q:       0.99, want: 248500 * time.Microsecond, wantOK: true,
		},
		{
			// 90 fast (<= 10), 10 in (500, 1000]: rank 99 is 9 of 10 into it.
			name:    "slow tail",
			buckets: istio(0, 0, 0, 90, 90, 90, 90, 90, 90, 100, 100),
			q:       0.99, want: 950 * time.Millisecond, wantOK: true,
		},
		{
			name:    "median from zero in the first bucket",
			buckets: istio(10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10),
			q:       0.5, want: 250 * time.Microsecond, wantOK: true,
		},
		{
			name:    "rank in +Inf yields the highest finite bound",
			buckets: istio(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10),
			q:       0.99, want: time.Second, wantOK: true,
		},
		{
			name:    "q 1 is the upper bound of the last bucket with data",
			buckets: hist(100, 5, 250, 10, inf, 10),
			q:       1, want: 250 * time.Millisecond, wantOK: true,
		},
		{
			name:    "q 0 with an empty first bucket",
			buckets: hist(100, 0, 250, 10, inf, 10),
			q:       0, want: 0, wantOK: true,
		},
		{name: "no observations", buckets: istio(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), q: 0.99},
		{name: "no buckets", q: 0.99},
		{name: "no +Inf bucket", buckets: hist(100, 5, 250, 10), q: 0.99},
		{name: "only +Inf", buckets: hist(inf, 10), q: 0.99},
		{name: "q above 1", buckets: hist(100, 5, inf, 5), q: 1.5},
		{name: "q NaN", buckets: hist(100, 5, inf, 5), q: math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := analysis.Sample{Buckets: tt.buckets}.Quantile(tt.q)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

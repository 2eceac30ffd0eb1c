package analysis

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// FuzzParse feeds text exposition pages to parse: it must not panic, and a
// parsed histogram is sorted and ends with +Inf.
func FuzzParse(f *testing.F) {
	f.Add(`# TYPE istio_requests_total counter
istio_requests_total{reporter="source",response_code="503"} 3
istio_requests_total{reporter="source",response_code="200"} 7
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{reporter="source",le="10"} 4
istio_request_duration_milliseconds_bucket{reporter="source",le="+Inf"} 10
istio_request_duration_milliseconds_sum{reporter="source"} 123
istio_request_duration_milliseconds_count{reporter="source"} 10
`)
	f.Add(`istio_requests_total{reporter="source"} NaN`)
	f.Add("# TYPE istio_request_duration_milliseconds histogram\nistio_request_duration_milliseconds_count{reporter=\"source\"} 1\n")
	f.Fuzz(func(t *testing.T, page string) {
		s, err := parse(strings.NewReader(page), expfmt.FmtText)
		if err != nil {
			return
		}
		for i := 1; i < len(s.Buckets); i++ {
			if s.Buckets[i].UpperBound <= s.Buckets[i-1].UpperBound {
				t.Fatalf("buckets not sorted: %v", s.Buckets)
			}
		}
		if n := len(s.Buckets); n > 0 && !math.IsInf(s.Buckets[n-1].UpperBound, +1) {
			t.Fatalf("last bucket is not +Inf: %v", s.Buckets)
		}
		s.Quantile(0.99)
		s.SuccessRate()
	})
}

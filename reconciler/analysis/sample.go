package analysis

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Sample is the cumulative request metrics of one or more proxies: what
// their istio_requests_total and istio_request_duration_milliseconds say
// about the requests they sent out (reporter="source"), summed over every
// other label.
//
// A Sample scraped from a proxy counts since that proxy started; Sub turns
// two of them into the traffic in between, Add sums proxies.
type Sample struct {
	// Requests is the number of requests.
	Requests float64 `json:"requests"`
	// Failures is the number of those that answered 5xx.
	Failures float64 `json:"failures"`
	// Buckets is the cumulative latency histogram, sorted by UpperBound
	// (milliseconds); the last bucket is +Inf and counts every observed
	// request. Nil when no request was observed.
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket is one cumulative histogram bucket: Count requests took at most
// UpperBound milliseconds (Prometheus's le label).
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      float64 `json:"count"`
}

// Sub returns the traffic between then and s, two samples of the same
// proxies. If any counter in s is lower than in then, or the histograms'
// buckets differ, the proxies restarted in between and s itself (the
// traffic since the restart) is returned, as Prometheus's rate() does.
//
// Subtract per proxy and then Add: a restart of one proxy hides in a sum
// of several (Delta does this for maps of scrapes).
func (s Sample) Sub(then Sample) Sample {
	if s.Requests < then.Requests || s.Failures < then.Failures || len(s.Buckets) < len(then.Buckets) {
		return s.clone()
	}
	out := Sample{Requests: s.Requests - then.Requests, Failures: s.Failures - then.Failures}
	if len(then.Buckets) == 0 {
		out.Buckets = slices.Clone(s.Buckets)
		return out
	}
	if !sameBounds(s.Buckets, then.Buckets) {
		return s.clone()
	}
	out.Buckets = make([]Bucket, len(s.Buckets))
	for i, b := range s.Buckets {
		if b.Count < then.Buckets[i].Count {
			return s.clone()
		}
		out.Buckets[i] = Bucket{UpperBound: b.UpperBound, Count: b.Count - then.Buckets[i].Count}
	}
	return out
}

// Add returns the sum of s and o, e.g. of two proxies. Histograms with
// different bucket layouts are merged on the union of their bounds; at a
// bound only one of them has, the other contributes its count at its
// next lower bound (a lower estimate that keeps the sum cumulative).
func (s Sample) Add(o Sample) Sample {
	out := Sample{Requests: s.Requests + o.Requests, Failures: s.Failures + o.Failures}
	switch {
	case len(o.Buckets) == 0:
		out.Buckets = slices.Clone(s.Buckets)
		return out
	case len(s.Buckets) == 0:
		out.Buckets = slices.Clone(o.Buckets)
		return out
	case sameBounds(s.Buckets, o.Buckets):
		out.Buckets = make([]Bucket, len(s.Buckets))
		for i, b := range s.Buckets {
			out.Buckets[i] = Bucket{UpperBound: b.UpperBound, Count: b.Count + o.Buckets[i].Count}
		}
		return out
	}
	bounds := make([]float64, 0, len(s.Buckets)+len(o.Buckets))
	for _, b := range s.Buckets {
		bounds = append(bounds, b.UpperBound)
	}
	for _, b := range o.Buckets {
		bounds = append(bounds, b.UpperBound)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	out.Buckets = make([]Bucket, len(bounds))
	for i, le := range bounds {
		out.Buckets[i] = Bucket{UpperBound: le, Count: countAt(s.Buckets, le) + countAt(o.Buckets, le)}
	}
	return out
}

// Delta returns the traffic of the proxies in now since start, both keyed
// by proxy (e.g. admin address, as ScrapeAll returns them): the sum over
// now of now[k].Sub(start[k]). A proxy missing from start counts with
// everything it reports (it was not scraped when the wave started).
func Delta(now, start map[string]Sample) Sample {
	var sum Sample
	for k, s := range now {
		sum = sum.Add(s.Sub(start[k]))
	}
	return sum
}

// SuccessRate returns the percentage (0-100) of requests that did not
// answer 5xx; ok is false when there were no requests.
func (s Sample) SuccessRate() (percent float64, ok bool) {
	if s.Requests <= 0 {
		return 0, false
	}
	failures := min(max(s.Failures, 0), s.Requests)
	return 100 * (s.Requests - failures) / s.Requests, true
}

// Quantile returns the q-quantile (0 <= q <= 1) of the request latency,
// estimated as Prometheus's histogram_quantile does: the bucket holding
// the rank is found and the value interpolated linearly within it (from 0
// for the first bucket); a rank in the +Inf bucket yields the highest
// finite bound. ok is false when q is out of range, nothing was observed,
// or the histogram has no +Inf bucket or no finite one.
func (s Sample) Quantile(q float64) (time.Duration, bool) {
	ms, ok := bucketQuantile(q, s.Buckets)
	if !ok {
		return 0, false
	}
	return time.Duration(math.Round(ms * float64(time.Millisecond))), true
}

// bucketQuantile is Prometheus's BucketQuantile (promql/quantile.go) over
// cumulative buckets sorted by bound, without its NaN/Inf results.
func bucketQuantile(q float64, buckets []Bucket) (float64, bool) {
	n := len(buckets)
	if math.IsNaN(q) || q < 0 || q > 1 || n < 2 || !math.IsInf(buckets[n-1].UpperBound, +1) {
		return 0, false
	}
	// Counts from deltas may dip by float noise; keep them monotonic as
	// Prometheus does.
	counts := make([]float64, n)
	for i, b := range buckets {
		counts[i] = b.Count
		if i > 0 && counts[i] < counts[i-1] {
			counts[i] = counts[i-1]
		}
	}
	observations := counts[n-1]
	if observations <= 0 {
		return 0, false
	}
	rank := q * observations
	b := sort.Search(n-1, func(i int) bool { return counts[i] >= rank })
	if b == n-1 {
		return buckets[n-2].UpperBound, true
	}
	if b == 0 && buckets[0].UpperBound <= 0 {
		return buckets[0].UpperBound, true
	}
	var (
		start = 0.0
		end   = buckets[b].UpperBound
		count = counts[b]
	)
	if b > 0 {
		start = buckets[b-1].UpperBound
		count -= counts[b-1]
		rank -= counts[b-1]
	}
	if count <= 0 { // q == 0 and an empty first bucket
		return start, true
	}
	return start + (end-start)*(rank/count), true
}

// countAt returns the cumulative count of buckets at bound le: the count
// of the highest bucket whose bound is at most le.
func countAt(buckets []Bucket, le float64) float64 {
	i := sort.Search(len(buckets), func(i int) bool { return buckets[i].UpperBound > le })
	if i == 0 {
		return 0
	}
	return buckets[i-1].Count
}

func sameBounds(a, b []Bucket) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UpperBound != b[i].UpperBound {
			return false
		}
	}
	return true
}

func (s Sample) clone() Sample {
	s.Buckets = slices.Clone(s.Buckets)
	return s
}

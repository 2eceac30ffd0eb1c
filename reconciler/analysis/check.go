package analysis

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
)

// Result is the outcome of one check, or of all of them (Verdict).
type Result = admin.CheckResult

// Results.
const (
	Pass         = admin.Pass
	Fail         = admin.Fail
	Inconclusive = admin.Inconclusive
)

// Reading is the result of one metric's check.
type Reading = admin.Reading

// Input is what one check looks at.
type Input struct {
	// Wave is the traffic of the wave's proxies since the wave started
	// (see Delta).
	Wave Sample
	// Baseline is the traffic of the proxies still on the last good
	// revision over the same time; zero when there are none (the last
	// wave), which skips baseline comparisons.
	Baseline Sample
	// WaveNodes are the node ids of the wave's proxies, for {{wave_nodes}}.
	WaveNodes []string
	// Revision is the revision being rolled out (main@sha1:...), for
	// {{revision}}.
	Revision string
}

// Check runs every metric of a and returns one Reading per metric, in
// order. Prometheus metrics are queried concurrently through q, which may
// be nil when a has none; ctx bounds the queries.
//
// Built-in metrics (request-success-rate, request-duration) are computed
// from in.Wave and are inconclusive below a.MinRequests requests, or with
// no request at all. A baseline bound is checked only when in.Baseline has
// at least MinRequests (and at least one) requests; otherwise it is
// skipped, which Message notes, and the metric is judged by its absolute
// bound alone (pass if it has none).
//
// A Prometheus query that fails (server unreachable, bad PromQL, no single
// value) or yields NaN is inconclusive, not a failure: a broken monitoring
// system does not roll back a healthy rollout, it keeps the bake from
// completing until the progress deadline.
func Check(ctx context.Context, a v1alpha1.Analysis, in Input, q Querier) []Reading {
	readings := make([]Reading, len(a.Metrics))
	var wg sync.WaitGroup
	for i, m := range a.Metrics {
		switch {
		case m.Prometheus != nil:
			wg.Go(func() { readings[i] = checkPrometheus(ctx, m, in, q) })
		case m.Name == v1alpha1.MetricSuccessRate:
			readings[i] = checkSuccessRate(m, a.MinRequests, in)
		case m.Name == v1alpha1.MetricDuration:
			readings[i] = checkDuration(m, a.MinRequests, in)
		default:
			readings[i] = Reading{Metric: m.Name, Result: Inconclusive,
				Message: fmt.Sprintf("unknown metric %q without prometheus", m.Name)}
		}
	}
	wg.Wait()
	return readings
}

// Verdict combines readings: Fail if any failed, else Inconclusive if any
// was inconclusive, else Pass (also for no readings).
func Verdict(readings []Reading) Result {
	v := Pass
	for _, r := range readings {
		switch r.Result {
		case Fail:
			return Fail
		case Inconclusive:
			v = Inconclusive
		case Pass:
		default:
			v = Inconclusive
		}
	}
	return v
}

// enoughRequests returns "" when the wave has enough requests for a
// built-in metric, else why not.
func enoughRequests(s Sample, minRequests int64) string {
	switch {
	case s.Requests < float64(minRequests):
		return fmt.Sprintf("%s requests through the wave, fewer than minRequests %d", formatNum(s.Requests), minRequests)
	case s.Requests <= 0:
		return "no requests through the wave"
	}
	return ""
}

// baselineSkipped returns "" when the baseline has enough requests to be
// compared with, else the note for Message.
func baselineSkipped(s Sample, minRequests int64) string {
	if s.Requests > 0 && s.Requests >= float64(minRequests) {
		return ""
	}
	return fmt.Sprintf("baseline skipped: %s requests through the baseline proxies, need %d", formatNum(s.Requests), max(minRequests, 1))
}

func checkSuccessRate(m v1alpha1.Metric, minRequests int64, in Input) Reading {
	r := Reading{Metric: m.Name, Unit: "%", Requests: in.Wave.Requests, Result: Pass}
	var thresholds, problems, notes []string
	if m.Min != nil {
		thresholds = append(thresholds, ">= "+formatNum(*m.Min)+"%")
	}
	var maxDrop *float64
	if m.Baseline != nil {
		maxDrop = m.Baseline.MaxDrop
	}
	if why := enoughRequests(in.Wave, minRequests); why != "" {
		if maxDrop != nil {
			thresholds = append(thresholds, "baseline - "+formatNum(*maxDrop))
		}
		r.Threshold, r.Result, r.Message = strings.Join(thresholds, ", "), Inconclusive, why
		return r
	}
	rate, _ := in.Wave.SuccessRate()
	r.Value = rate
	if m.Min != nil && rate < *m.Min {
		problems = append(problems, fmt.Sprintf("success rate %s%% is below %s%%", formatNum(rate), formatNum(*m.Min)))
	}
	if maxDrop != nil {
		if skip := baselineSkipped(in.Baseline, minRequests); skip != "" {
			thresholds = append(thresholds, "baseline - "+formatNum(*maxDrop))
			notes = append(notes, skip)
		} else {
			base, _ := in.Baseline.SuccessRate()
			r.Baseline = &base
			bound := base - *maxDrop
			thresholds = append(thresholds, fmt.Sprintf(">= %s%% (baseline %s%% - %s)", formatNum(bound), formatNum(base), formatNum(*maxDrop)))
			if rate < bound {
				problems = append(problems, fmt.Sprintf("success rate %s%% is more than %s points below the baseline's %s%%",
					formatNum(rate), formatNum(*maxDrop), formatNum(base)))
			}
		}
	}
	return finish(r, thresholds, problems, notes)
}

func checkDuration(m v1alpha1.Metric, minRequests int64, in Input) Reading {
	r := Reading{Metric: m.Name, Unit: "ms", Requests: in.Wave.Requests, Result: Pass}
	var thresholds, problems, notes []string
	maxP99 := m.MaxP99.Duration
	if maxP99 > 0 {
		thresholds = append(thresholds, "<= "+formatMs(ms(maxP99)))
	}
	var maxRatio *float64
	if m.Baseline != nil {
		maxRatio = m.Baseline.MaxRatio
	}
	why := enoughRequests(in.Wave, minRequests)
	p99, ok := in.Wave.Quantile(0.99)
	if why == "" && !ok {
		why = "no request latency recorded for the wave"
	}
	if why != "" {
		if maxRatio != nil {
			thresholds = append(thresholds, "baseline x "+formatNum(*maxRatio))
		}
		r.Threshold, r.Result, r.Message = strings.Join(thresholds, ", "), Inconclusive, why
		return r
	}
	r.Value = ms(p99)
	if maxP99 > 0 && p99 > maxP99 {
		problems = append(problems, fmt.Sprintf("p99 %s is above %s", formatMs(r.Value), formatMs(ms(maxP99))))
	}
	if maxRatio != nil {
		skip := baselineSkipped(in.Baseline, minRequests)
		base, ok := in.Baseline.Quantile(0.99)
		if skip == "" && !ok {
			skip = "baseline skipped: no request latency recorded for the baseline proxies"
		}
		if skip != "" {
			thresholds = append(thresholds, "baseline x "+formatNum(*maxRatio))
			notes = append(notes, skip)
		} else {
			b := ms(base)
			r.Baseline = &b
			bound := b * *maxRatio
			thresholds = append(thresholds, fmt.Sprintf("<= %s (baseline %s x %s)", formatMs(bound), formatMs(b), formatNum(*maxRatio)))
			if r.Value > bound {
				problems = append(problems, fmt.Sprintf("p99 %s is more than %s times the baseline's %s",
					formatMs(r.Value), formatNum(*maxRatio), formatMs(b)))
			}
		}
	}
	return finish(r, thresholds, problems, notes)
}

func checkPrometheus(ctx context.Context, m v1alpha1.Metric, in Input, q Querier) Reading {
	r := Reading{Metric: m.Name, Result: Pass}
	var thresholds, problems []string
	if m.Min != nil {
		thresholds = append(thresholds, ">= "+formatNum(*m.Min))
	}
	if m.Max != nil {
		thresholds = append(thresholds, "<= "+formatNum(*m.Max))
	}
	r.Threshold = strings.Join(thresholds, ", ")
	inconclusive := func(format string, args ...any) Reading {
		r.Result, r.Message = Inconclusive, fmt.Sprintf(format, args...)
		return r
	}
	if q == nil {
		return inconclusive("no Prometheus querier configured")
	}
	if len(in.WaveNodes) == 0 && strings.Contains(m.Prometheus.Query, "{{wave_nodes}}") {
		return inconclusive("query uses {{wave_nodes}} but the wave has no nodes")
	}
	promql := ExpandQuery(m.Prometheus.Query, in.WaveNodes, in.Revision)
	v, err := q.Query(ctx, m.Prometheus.Address, promql)
	if err != nil {
		return inconclusive("%v (query: %s)", err, promql)
	}
	r.Value = v
	if math.IsNaN(v) {
		return inconclusive("query returned NaN, e.g. a ratio with no traffic (query: %s)", promql)
	}
	if m.Min != nil && v < *m.Min {
		problems = append(problems, fmt.Sprintf("%s is below %s", formatNum(v), formatNum(*m.Min)))
	}
	if m.Max != nil && v > *m.Max {
		problems = append(problems, fmt.Sprintf("%s is above %s", formatNum(v), formatNum(*m.Max)))
	}
	return finish(r, thresholds, problems, nil)
}

// ExpandQuery fills in a PrometheusQuery's placeholders: {{wave_nodes}}
// becomes a regex alternation of the node ids, each escaped with
// regexp.QuoteMeta (a|b\.c), and {{revision}} the revision. Both are
// escaped for use inside a double-quoted PromQL string, as in
//
//	sum(rate(http_errors_total{pod=~"{{wave_nodes}}"}[1m]))
//
// (not inside a `raw` string).
func ExpandQuery(query string, waveNodes []string, revision string) string {
	quoted := make([]string, len(waveNodes))
	for i, n := range waveNodes {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return strings.NewReplacer(
		"{{wave_nodes}}", escapePromQL(strings.Join(quoted, "|")),
		"{{revision}}", escapePromQL(revision),
	).Replace(query)
}

// escapePromQL escapes s for a double-quoted PromQL string literal, whose
// escapes are Go's.
func escapePromQL(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// finish sets r's Threshold, Result and Message from what the checks found.
func finish(r Reading, thresholds, problems, notes []string) Reading {
	r.Threshold = strings.Join(thresholds, ", ")
	if len(problems) > 0 {
		r.Result = Fail
	}
	r.Message = strings.Join(append(problems, notes...), "; ")
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func formatMs(v float64) string { return formatNum(v) + "ms" }

// formatNum prints v with at most three decimals and no trailing zeros.
func formatNum(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

package v1alpha1

import (
	"fmt"
	"net/url"
	"time"

	"github.com/robfig/cron/v3"
)

// FieldError is a problem with one field of a RolloutPolicy. Path is
// dotted from the document root ("spec.waves[1].percent"), so the
// compiler can point at its file and line.
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// CronParser parses window schedules: standard 5-field cron, descriptors
// (@daily, @every 1h) and a CRON_TZ= prefix.
func CronParser() cron.Parser {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// Validate checks p and returns every problem found (nil when valid).
func (p *RolloutPolicy) Validate() []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if p.Metadata.Name == "" {
		add("metadata.name", "is required")
	}
	s := &p.Spec
	prev := int32(0)
	for i, w := range s.Waves {
		path := fmt.Sprintf("spec.waves[%d]", i)
		switch {
		case w.Percent == nil && w.Selector == nil:
			add(path, "set percent or selector")
		case w.Percent != nil && w.Selector != nil:
			add(path, "set percent or selector, not both")
		case w.Percent != nil:
			if *w.Percent < 1 || *w.Percent > 100 {
				add(path+".percent", "must be 1-100, got %d", *w.Percent)
			} else if *w.Percent <= prev {
				add(path+".percent", "must grow from wave to wave (cumulative share): %d after %d", *w.Percent, prev)
			} else {
				prev = *w.Percent
			}
		case len(w.Selector.MatchLabels) == 0:
			add(path+".selector.matchLabels", "must name at least one label")
		}
	}
	if a := s.Analysis; a != nil {
		if a.FailureThreshold < 0 {
			add("spec.analysis.failureThreshold", "must not be negative")
		}
		if a.MinRequests < 0 {
			add("spec.analysis.minRequests", "must not be negative")
		}
		seen := map[string]bool{}
		for i, m := range a.Metrics {
			path := fmt.Sprintf("spec.analysis.metrics[%d]", i)
			if seen[m.Name] {
				add(path+".name", "duplicate metric %q", m.Name)
			}
			seen[m.Name] = true
			errs = append(errs, m.validate(path)...)
		}
	}
	parser := CronParser()
	for i, w := range s.Windows {
		path := fmt.Sprintf("spec.windows[%d]", i)
		if _, err := parser.Parse(w.Schedule); err != nil {
			add(path+".schedule", "invalid cron schedule %q: %v", w.Schedule, err)
		}
		if w.Duration.Duration <= 0 {
			add(path+".duration", "must be positive")
		}
		if w.Action != WindowAllow && w.Action != WindowDeny {
			add(path+".action", "must be %q or %q, got %q", WindowAllow, WindowDeny, w.Action)
		}
	}
	for i, h := range s.Webhooks {
		path := fmt.Sprintf("spec.webhooks[%d]", i)
		switch h.Type {
		case WebhookConfirmPromotion, WebhookRollback, WebhookEvent:
		default:
			add(path+".type", "must be %s, %s or %s, got %q", WebhookConfirmPromotion, WebhookRollback, WebhookEvent, h.Type)
		}
		if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(path+".url", "must be an http(s) URL")
		}
	}
	return errs
}

func (m *Metric) validate(path string) []FieldError {
	var errs []FieldError
	add := func(p, format string, args ...any) {
		errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case m.Name == "":
		add(path+".name", "is required")
	case m.Prometheus != nil:
		if m.Prometheus.Query == "" {
			add(path+".prometheus.query", "is required")
		}
		if u, err := url.Parse(m.Prometheus.Address); err != nil || u.Scheme == "" || u.Host == "" {
			add(path+".prometheus.address", "must be a URL like http://127.0.0.1:9090")
		}
		if m.Min == nil && m.Max == nil {
			add(path, "set min or max")
		}
	case m.Name == MetricSuccessRate:
		if m.Min == nil && (m.Baseline == nil || m.Baseline.MaxDrop == nil) {
			add(path, "set min (percent) or baseline.maxDrop")
		}
		if m.Min != nil && (*m.Min < 0 || *m.Min > 100) {
			add(path+".min", "must be a percentage 0-100")
		}
	case m.Name == MetricDuration:
		if m.MaxP99.Duration <= 0 && (m.Baseline == nil || m.Baseline.MaxRatio == nil) {
			add(path, "set maxP99 or baseline.maxRatio")
		}
	default:
		add(path+".name", "unknown metric %q: use %s, %s, or give prometheus", m.Name, MetricSuccessRate, MetricDuration)
	}
	return errs
}

// Effective returns the analysis settings with defaults applied.
func (a *Analysis) Effective() Analysis {
	out := Analysis{Interval: Duration{DefaultInterval}, FailureThreshold: DefaultFailureThreshold}
	if a == nil {
		return out
	}
	out.Metrics, out.MinRequests = a.Metrics, a.MinRequests
	if a.Interval.Duration > 0 {
		out.Interval = a.Interval
	}
	if a.FailureThreshold > 0 {
		out.FailureThreshold = a.FailureThreshold
	}
	return out
}

// EffectiveProgressDeadline returns ProgressDeadline or its default.
func (s *RolloutPolicySpec) EffectiveProgressDeadline() time.Duration {
	if s.ProgressDeadline.Duration > 0 {
		return s.ProgressDeadline.Duration
	}
	return DefaultProgressDeadline
}

package v1alpha1

import (
	"encoding/json"
	"fmt"
	"time"
)

// RolloutPolicy says how a new revision of the mesh policy reaches the
// fleet: in which waves, watched by which analysis, inside which windows,
// and who is told. Without one, a revision goes to every proxy at once
// (one wave of 100%).
//
//	apiVersion: gitmesh.io/v1alpha1
//	kind: RolloutPolicy
//	metadata: {name: default, namespace: default}
//	spec:
//	  waves:
//	  - {percent: 25, bake: 8s}
//	  - {percent: 100, bake: 0s}
//	  analysis:
//	    interval: 1s
//	    failureThreshold: 2
//	    minRequests: 3
//	    metrics:
//	    - {name: request-success-rate, min: 99}
//	    - {name: request-duration, maxP99: 500ms}
//	  progressDeadline: 2m
type RolloutPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   ObjectMeta        `json:"metadata"`
	Spec       RolloutPolicySpec `json:"spec"`
}

// ObjectMeta is the part of Kubernetes object metadata gitmesh reads.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RolloutPolicySpec is the body of a RolloutPolicy.
type RolloutPolicySpec struct {
	// Waves are the rollout's steps, in order. Each names the proxies that
	// have the new revision once it starts: a cumulative share of the fleet
	// (percent) or the proxies matching a label selector. Default: one wave
	// of 100%.
	Waves []Wave `json:"waves,omitempty"`
	// Analysis is checked while each wave bakes. Default: no checks beyond
	// NACKs (a NACK always rolls back).
	Analysis *Analysis `json:"analysis,omitempty"`
	// Windows allow or deny starting a rollout by schedule (change
	// freezes). A new revision outside every allow window, or inside a
	// deny window, waits; status says until when.
	Windows []Window `json:"windows,omitempty"`
	// Webhooks are called at gates (confirm-promotion) and on events.
	Webhooks []Webhook `json:"webhooks,omitempty"`
	// ProgressDeadline fails a wave that does not finish (every proxy in it
	// ACKed and its bake passed) within this time, e.g. when a proxy never
	// ACKs. Default 10m.
	ProgressDeadline Duration `json:"progressDeadline,omitzero"`
}

// Wave is one step of a rollout.
type Wave struct {
	// Name labels the wave in status and history. Default "wave-<n>".
	Name string `json:"name,omitempty"`
	// Percent is the cumulative share of the fleet (1-100) that has the new
	// revision once this wave starts, rounded up to at least one proxy.
	// Exactly one of Percent and Selector is set.
	Percent *int32 `json:"percent,omitempty"`
	// Selector picks the proxies of this wave by their labels (in addition
	// to those of earlier waves).
	Selector *LabelSelector `json:"selector,omitempty"`
	// Bake is how long the wave is watched after every proxy in it ACKed,
	// before the next wave starts. 0s moves on at once.
	Bake Duration `json:"bake,omitzero"`
}

// LabelSelector matches proxies by the labels they announce.
type LabelSelector struct {
	// MatchLabels are label=value pairs a proxy must all have.
	MatchLabels map[string]string `json:"matchLabels"`
}

// Matches reports whether labels has every pair of s.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Analysis is how a baking wave is judged.
type Analysis struct {
	// Interval between checks. Default 10s.
	Interval Duration `json:"interval,omitzero"`
	// FailureThreshold is how many consecutive failed checks roll back.
	// Default 2.
	FailureThreshold int32 `json:"failureThreshold,omitempty"`
	// MinRequests is the least number of requests through the wave's
	// proxies since the wave started for a built-in check to count; below
	// it a check is inconclusive (neither passed nor failed) and the bake
	// does not complete. Default 0.
	MinRequests int64 `json:"minRequests,omitempty"`
	// Metrics are the checks.
	Metrics []Metric `json:"metrics,omitempty"`
}

// Built-in metric names.
const (
	// MetricSuccessRate is the share (percent) of requests through the
	// wave's proxies that did not answer 5xx, from istio_requests_total.
	MetricSuccessRate = "request-success-rate"
	// MetricDuration is the p99 latency of requests through the wave's
	// proxies, from istio_request_duration_milliseconds.
	MetricDuration = "request-duration"
)

// Metric is one check.
type Metric struct {
	// Name is request-success-rate, request-duration, or any name for a
	// Prometheus query (then Prometheus is required).
	Name string `json:"name"`
	// Min is the least acceptable value: a percentage for
	// request-success-rate, the query result for Prometheus metrics.
	Min *float64 `json:"min,omitempty"`
	// Max is the greatest acceptable value (Prometheus metrics).
	Max *float64 `json:"max,omitempty"`
	// MaxP99 is the greatest acceptable p99 latency (request-duration).
	MaxP99 Duration `json:"maxP99,omitzero"`
	// Baseline compares the wave with the proxies not yet updated.
	Baseline *Baseline `json:"baseline,omitempty"`
	// Prometheus queries a Prometheus server instead of the proxies.
	Prometheus *PrometheusQuery `json:"prometheus,omitempty"`
}

// Baseline bounds how much worse the wave may be than the proxies that
// still run the last good revision (checked only when the baseline has at
// least MinRequests too).
type Baseline struct {
	// MaxDrop is how many percentage points the wave's success rate may be
	// below the baseline's (request-success-rate).
	MaxDrop *float64 `json:"maxDrop,omitempty"`
	// MaxRatio is how many times the baseline's p99 the wave's p99 may be
	// (request-duration), e.g. 1.5.
	MaxRatio *float64 `json:"maxRatio,omitempty"`
}

// PrometheusQuery is a PromQL instant query whose scalar (or single-sample
// vector) result is checked against Min/Max.
type PrometheusQuery struct {
	// Address is the Prometheus base URL, e.g. http://127.0.0.1:9090.
	Address string `json:"address"`
	// Query is PromQL. {{wave_nodes}} expands to a regex alternation of the
	// node ids in the baking wave, {{revision}} to the new revision.
	Query string `json:"query"`
}

// Window actions.
const (
	WindowAllow = "allow"
	WindowDeny  = "deny"
)

// Window is a cron-scheduled span in which rollouts may (allow) or may not
// (deny) start.
type Window struct {
	// Name labels the window in status.
	Name string `json:"name,omitempty"`
	// Schedule is a cron expression (robfig/cron, 5 fields or a descriptor
	// like @daily; CRON_TZ=Europe/Berlin prefix allowed) for the window's start.
	Schedule string `json:"schedule"`
	// Duration is how long the window lasts from each start.
	Duration Duration `json:"duration"`
	// Action is allow or deny.
	Action string `json:"action"`
}

// Webhook types.
const (
	WebhookConfirmPromotion = "confirm-promotion"
	WebhookRollback         = "rollback"
	WebhookEvent            = "event"
)

// Webhook is an HTTP endpoint gitmesh POSTs a JSON Event to.
type Webhook struct {
	// Name labels the webhook in status and logs.
	Name string `json:"name"`
	// Type is confirm-promotion (a gate before each next wave: 200 goes on,
	// anything else waits and asks again every analysis interval), rollback
	// (told when a rollout rolls back) or event (told of every phase change).
	Type string `json:"type"`
	// URL receives the POST.
	URL string `json:"url"`
	// Timeout per call. Default 10s.
	Timeout Duration `json:"timeout,omitzero"`
}

// Duration is a time.Duration written as a Go duration string ("8s", "2m").
type Duration struct {
	time.Duration
}

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"8s\" or \"2m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}

// IsZero reports whether d is 0 (for omitzero).
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Defaults used when a field is not set.
const (
	DefaultProgressDeadline = 10 * time.Minute
	DefaultInterval         = 10 * time.Second
	DefaultFailureThreshold = 2
	DefaultWebhookTimeout   = 10 * time.Second
)

// Default returns the policy used when a revision has no RolloutPolicy:
// one wave of 100%, no bake, no analysis.
func Default() *RolloutPolicy {
	hundred := int32(100)
	return &RolloutPolicy{
		APIVersion: GroupVersion, Kind: KindRolloutPolicy,
		Metadata: ObjectMeta{Name: "default"},
		Spec:     RolloutPolicySpec{Waves: []Wave{{Name: "wave-1", Percent: &hundred}}},
	}
}

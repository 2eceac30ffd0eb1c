package admin

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
)

// Phase is where a Rollout is in its journey through the fleet.
type Phase string

// Rollout phases. Pending -> Progressing(wave n) -> Baking -> (next wave:
// Progressing) ... -> Promoted; RolledBack, Failed and Superseded end a
// rollout early; Paused holds it where it is.
const (
	// PhasePending waits for a window that allows starting.
	PhasePending Phase = "Pending"
	// PhaseProgressing has pushed the current wave and waits for its ACKs.
	PhaseProgressing Phase = "Progressing"
	// PhaseBaking watches the current wave (analysis, bake time, gates).
	PhaseBaking Phase = "Baking"
	// PhasePaused holds the rollout until resume.
	PhasePaused Phase = "Paused"
	// PhasePromoted: every proxy runs the revision; it is the new last good.
	PhasePromoted Phase = "Promoted"
	// PhaseRolledBack: a NACK, a failed gate or a person rolled it back.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseFailed: a wave missed its progress deadline; rolled back.
	PhaseFailed Phase = "Failed"
	// PhaseSuperseded: a newer revision replaced it mid-rollout.
	PhaseSuperseded Phase = "Superseded"
)

// Done reports whether p ends a rollout.
func (p Phase) Done() bool {
	switch p {
	case PhasePromoted, PhaseRolledBack, PhaseFailed, PhaseSuperseded:
		return true
	}
	return false
}

// Rollout triggers.
const (
	TriggerCommit   = "commit"   // a new revision in Git
	TriggerRollback = "rollback" // `gitmesh rollback`
	TriggerInitial  = "initial"  // the first revision, served to all at once
)

// Rollout is one revision's journey through the fleet. It is persisted
// (in-flight and in history) as JSON.
type Rollout struct {
	ID               uint64 `json:"id"`
	Revision         string `json:"revision"`
	Version          string `json:"version"`
	PreviousRevision string `json:"previousRevision,omitempty"`
	Trigger          string `json:"trigger"`
	Phase            Phase  `json:"phase"`
	// Wave is the index of the current wave.
	Wave  int          `json:"wave"`
	Waves []WaveRecord `json:"waves"`
	// Reason says why the rollout ended, or why it waits.
	Reason string `json:"reason,omitempty"`
	// Waiting says what the rollout waits for now (a window, ACKs, bake
	// time, analysis, a webhook), with until when if known.
	Waiting    string    `json:"waiting,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Readings are the last analysis readings.
	Readings []Reading `json:"readings,omitempty"`
	// Updated lists the proxies that were given the revision.
	Updated []string `json:"updated,omitempty"`
	// Policy is the RolloutPolicy in force (the revision's own, or the default).
	Policy v1alpha1.RolloutPolicySpec `json:"policy"`
	// PausedFrom is the phase to return to on resume.
	PausedFrom Phase `json:"pausedFrom,omitempty"`
}

// WaveRecord is one wave of a Rollout.
type WaveRecord struct {
	Name string `json:"name"`
	// Nodes are the proxies the wave updated (cumulative membership minus
	// earlier waves).
	Nodes     []string  `json:"nodes"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	SyncedAt  time.Time `json:"syncedAt,omitzero"`
	BakedAt   time.Time `json:"bakedAt,omitzero"`
}

// Operations a person can ask of the rollout (admin API, CLI).
const (
	OpPromote  = "promote"
	OpAbort    = "abort"
	OpPause    = "pause"
	OpResume   = "resume"
	OpRollback = "rollback"
)

// Request is a manual operation on the rollout
// (POST /api/v1/rollout).
type Request struct {
	// Op is promote, abort, pause, resume or rollback.
	Op string `json:"op"`
	// Full (promote) skips every remaining wave.
	Full bool `json:"full,omitempty"`
	// To (rollback) names a previously promoted revision: a full revision,
	// a commit SHA or a unique SHA prefix. Default: the last good revision
	// (aborting an in-flight rollout), or, with none in flight, the one
	// promoted before it.
	To string `json:"to,omitempty"`
}

// Response answers a Request.
type Response struct {
	Message string `json:"message"`
	// Code is the HTTP status the admin API answers with.
	Code int `json:"-"`
}

// Event is the JSON body gitmesh POSTs to webhooks.
type Event struct {
	// Type is the webhook type called: confirm-promotion, rollback or event.
	Type      string    `json:"type"`
	RolloutID uint64    `json:"rolloutId"`
	Revision  string    `json:"revision"`
	Version   string    `json:"version"`
	Wave      string    `json:"wave"`
	Phase     Phase     `json:"phase"`
	Reason    string    `json:"reason,omitempty"`
	Time      time.Time `json:"time"`
}

// CheckResult is the outcome of one analysis check, or of all of them.
type CheckResult string

// Results.
const (
	// Pass: the metric is within its thresholds.
	Pass CheckResult = "pass"
	// Fail: the metric breaks a threshold; FailureThreshold consecutive
	// failing checks roll the rollout back.
	Fail CheckResult = "fail"
	// Inconclusive: the check could not judge (too few requests, Prometheus
	// unreachable, no data). It neither fails the wave nor lets its bake
	// complete; the wave's progressDeadline bounds how long that can last.
	Inconclusive CheckResult = "inconclusive"
)

// Reading is the result of one metric's check, for status, history and
// logs.
type Reading struct {
	// Metric is the metric's name (v1alpha1.Metric.Name).
	Metric string `json:"metric"`
	// Value is what was measured: a percentage for request-success-rate,
	// milliseconds for request-duration, the query's value for a
	// Prometheus metric. 0 when nothing could be measured.
	Value float64 `json:"value"`
	// Unit is Value's unit: "%", "ms" or "" (a Prometheus value).
	Unit string `json:"unit,omitempty"`
	// Threshold says what Value was held to, e.g. ">= 99%",
	// "<= 500ms, <= 372ms (baseline 248ms x 1.5)".
	Threshold string `json:"threshold,omitempty"`
	// Baseline is the same metric measured on the proxies not yet updated,
	// when it was compared.
	Baseline *float64 `json:"baseline,omitempty"`
	// Requests is the number of requests through the wave's proxies the
	// built-in metrics were computed from (0 for Prometheus metrics).
	Requests float64 `json:"requests"`
	// Result is the check's outcome.
	Result CheckResult `json:"result"`
	// Message explains a fail or an inconclusive result, and notes a
	// baseline comparison that was skipped.
	Message string `json:"message,omitempty"`
}

// String formats r for logs: "request-success-rate 97.5% (>= 99%): fail: ...".
func (r Reading) String() string {
	var b strings.Builder
	b.WriteString(r.Metric)
	b.WriteByte(' ')
	b.WriteString(FormatNumber(r.Value))
	b.WriteString(r.Unit)
	if r.Threshold != "" {
		b.WriteString(" (")
		b.WriteString(r.Threshold)
		b.WriteByte(')')
	}
	b.WriteString(": ")
	b.WriteString(string(r.Result))
	if r.Message != "" {
		b.WriteString(": ")
		b.WriteString(r.Message)
	}
	return b.String()
}

// FormatNumber formats v with at most three decimals: 97.5, 0.125, 12.
func FormatNumber(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

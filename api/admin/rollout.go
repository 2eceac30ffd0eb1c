package admin

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/compiler"
)

// Phase is where a Rollout is in its journey through the fleet, and, once
// it is done, its outcome. The same strings are shown by `gitmesh status`
// and `gitmesh history` (text and JSON), sent to webhooks, and used as the
// label values of gitmesh_rollout_phase{phase} and
// gitmesh_rollouts_total{outcome}.
type Phase string

// Rollout phases. Pending -> Progressing(wave n) -> Baking -> (next wave:
// Progressing) ... -> Promoted; RolledBack, Failed, Aborted and Superseded
// end a rollout early; Paused holds it where it is. ManualRollback and
// Refused are outcomes of history records that never had waves.
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
	// PhaseRolledBack: the controller rolled it back on its own, because a
	// proxy NACKed the revision or the analysis failed.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseFailed: a wave missed its progress deadline; rolled back.
	PhaseFailed Phase = "Failed"
	// PhaseAborted: a person rolled it back ('gitmesh abort', or 'gitmesh
	// rollback' while it was in flight).
	PhaseAborted Phase = "Aborted"
	// PhaseSuperseded: a newer revision replaced it mid-rollout.
	PhaseSuperseded Phase = "Superseded"
	// PhaseManualRollback: a person rolled the whole fleet back to this
	// (earlier promoted) revision with 'gitmesh rollback', at once and
	// without waves; the controller holds there.
	PhaseManualRollback Phase = "ManualRollback"
	// PhaseRefused: the revision never reached a proxy: it failed to build,
	// validate or compile (Reason and Diagnostics say why).
	PhaseRefused Phase = "Refused"
)

// Phases lists every phase and outcome, in-flight phases first.
func Phases() []Phase {
	return []Phase{PhasePending, PhaseProgressing, PhaseBaking, PhasePaused,
		PhasePromoted, PhaseRolledBack, PhaseFailed, PhaseAborted, PhaseSuperseded, PhaseManualRollback, PhaseRefused}
}

// Done reports whether p ends a rollout.
func (p Phase) Done() bool {
	switch p {
	case PhasePromoted, PhaseRolledBack, PhaseFailed, PhaseAborted, PhaseSuperseded, PhaseManualRollback, PhaseRefused:
		return true
	}
	return false
}

// Succeeded reports whether p is an outcome that leaves the fleet on the
// newest revision it was given: Promoted. RolledBack, Failed, Aborted,
// ManualRollback and Refused are failures (`gitmesh status --watch`
// exits 1 on them); Superseded is neither.
func (p Phase) Succeeded() bool { return p == PhasePromoted }

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
	// Wave is the index in Waves of the current wave (the last one reached
	// once the rollout is done). Waves are numbered from 1 wherever a
	// person or a script reads them: on the wire (JSON "wave"), in text
	// ("wave 2/3") and in default wave names ("wave-2"); see WaveNumber.
	Wave  int          `json:"-"`
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
	// Diagnostics are the first error diagnostics (file:line) of a Refused
	// revision, at most MaxHistoryDiagnostics.
	Diagnostics compiler.Diagnostics `json:"diagnostics,omitempty"`
}

// MaxHistoryDiagnostics is how many diagnostics a Refused history record keeps.
const MaxHistoryDiagnostics = 5

// WaveNumber is the current wave's 1-based number, 0 when the rollout has
// no waves (an initial revision, a manual rollback, a refused revision).
func (ro *Rollout) WaveNumber() int {
	if len(ro.Waves) == 0 {
		return 0
	}
	return ro.Wave + 1
}

// rolloutJSON is Rollout on the wire, with the 1-based wave number.
type rolloutJSON struct {
	rolloutFields
	// Wave is the current wave's 1-based number; 0 when there are no waves.
	Wave int `json:"wave"`
}

// rolloutFields is Rollout without its methods, for encoding.
type rolloutFields Rollout

// MarshalJSON encodes ro with "wave" as the 1-based wave number.
func (ro Rollout) MarshalJSON() ([]byte, error) {
	return json.Marshal(rolloutJSON{rolloutFields: rolloutFields(ro), Wave: ro.WaveNumber()})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (ro *Rollout) UnmarshalJSON(b []byte) error {
	var v rolloutJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*ro = Rollout(v.rolloutFields)
	ro.Wave = max(v.Wave-1, 0)
	return nil
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
	// To (rollback) names a previously promoted revision: a history id
	// ("4" or "#4"), a full revision, a commit SHA or a unique SHA prefix.
	// Default: the last good revision
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
	b.WriteString(r.FormatValue())
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

// Measured reports whether Value holds a measurement: it does not for an
// inconclusive reading that measured nothing (no requests through the
// wave, no data from Prometheus).
func (r Reading) Measured() bool {
	return r.Result != Inconclusive || r.Value != 0 || r.Requests > 0
}

// FormatValue writes Value with its unit ("97.5%", "120ms"), or "n/a" when
// nothing was measured.
func (r Reading) FormatValue() string {
	if !r.Measured() {
		return "n/a"
	}
	return FormatNumber(r.Value) + r.Unit
}

// FormatNumber formats v with at most three decimals: 97.5, 0.125, 12.
func FormatNumber(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

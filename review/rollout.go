package review

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/compiler"
)

// RolloutSummary is how head would reach the fleet.
type RolloutSummary struct {
	// Policy names head's RolloutPolicy ("namespace/name"), or "default"
	// when head has none (v1alpha1.Default: one wave of 100%).
	Policy string `json:"policy"`
	// Changed says the RolloutPolicy itself differs from base's: this
	// change rolls out under the new one.
	Changed bool `json:"changed"`
	// Base summarizes base's policy when Changed.
	Base string `json:"base,omitempty"`
	// Waves are head's waves, in order: "canary: 25% bake 8s".
	Waves []string `json:"waves"`
	// Gates are what is checked while a wave bakes, and the deadline.
	Gates []string `json:"gates,omitempty"`
	// Windows are the schedules allowing or denying a start.
	Windows []string `json:"windows,omitempty"`
	// Webhooks are the webhooks called, by name and type (never the URL,
	// which may carry a token).
	Webhooks []string `json:"webhooks,omitempty"`
	// Rolls says the compiled config of some proxy class changes, so a
	// rollout starts at all.
	Rolls bool `json:"rolls"`
}

// summarizeRollout describes head's RolloutPolicy and whether it changed.
func summarizeRollout(base, head *compiler.Policy, classes []ClassDiff) *RolloutSummary {
	hp, bp := head.RolloutPolicy(), base.RolloutPolicy()
	s := &RolloutSummary{Policy: rolloutName(hp), Waves: []string{}}
	if !reflect.DeepEqual(specJSON(bp), specJSON(hp)) {
		s.Changed = true
		s.Base = rolloutName(bp) + ": " + strings.Join(describeWaves(effective(bp)), ", ")
	}
	rp := effective(hp)
	s.Waves = describeWaves(rp)
	s.Gates = describeGates(rp)
	for _, w := range rp.Spec.Windows {
		win := fmt.Sprintf("%s %q for %s", w.Action, w.Schedule, shortDuration(w.Duration.Duration))
		if w.Name != "" {
			win = w.Name + ": " + win
		}
		s.Windows = append(s.Windows, win)
	}
	for _, w := range rp.Spec.Webhooks {
		s.Webhooks = append(s.Webhooks, fmt.Sprintf("%s (%s)", w.Name, w.Type))
	}
	for _, c := range classes {
		if c.BaseVersion != c.HeadVersion {
			s.Rolls = true
		}
	}
	return s
}

func effective(p *v1alpha1.RolloutPolicy) *v1alpha1.RolloutPolicy {
	if p == nil {
		return v1alpha1.Default()
	}
	return p
}

func rolloutName(p *v1alpha1.RolloutPolicy) string {
	if p == nil {
		return "default"
	}
	ns := p.Metadata.Namespace
	if ns == "" {
		ns = nodemeta.DefaultNamespace
	}
	return ns + "/" + p.Metadata.Name
}

// specJSON is the spec as compared: nil and the default are the same.
func specJSON(p *v1alpha1.RolloutPolicy) string {
	b, err := json.Marshal(effective(p).Spec)
	if err != nil {
		return ""
	}
	return string(b)
}

func describeWaves(p *v1alpha1.RolloutPolicy) []string {
	waves := p.Spec.Waves
	if len(waves) == 0 {
		return []string{"wave-1: 100%"}
	}
	out := make([]string, 0, len(waves))
	for i, w := range waves {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("wave-%d", i+1)
		}
		var target string
		switch {
		case w.Percent != nil:
			target = fmt.Sprintf("%d%%", *w.Percent)
		case w.Selector != nil:
			target = nodemeta.FormatLabels(w.Selector.MatchLabels)
		}
		s := name + ": " + target
		if w.Bake.Duration > 0 {
			s += " bake " + shortDuration(w.Bake.Duration)
		}
		out = append(out, s)
	}
	return out
}

func describeGates(p *v1alpha1.RolloutPolicy) []string {
	out := []string{"NACK rolls back"}
	if p.Spec.Analysis != nil {
		a := p.Spec.Analysis.Effective()
		for _, m := range a.Metrics {
			out = append(out, describeMetric(m))
		}
		if len(a.Metrics) > 0 {
			out = append(out, fmt.Sprintf("every %s, %d failures roll back", shortDuration(a.Interval.Duration), a.FailureThreshold))
		}
		if a.MinRequests > 0 {
			out = append(out, fmt.Sprintf("at least %d requests", a.MinRequests))
		}
	}
	for _, w := range p.Spec.Webhooks {
		if w.Type == v1alpha1.WebhookConfirmPromotion {
			out = append(out, "confirm-promotion webhook "+w.Name)
		}
	}
	out = append(out, "progress deadline "+shortDuration(p.Spec.EffectiveProgressDeadline()))
	return out
}

func describeMetric(m v1alpha1.Metric) string {
	var bounds []string
	if m.Min != nil {
		bounds = append(bounds, fmt.Sprintf(">= %g", *m.Min))
	}
	if m.Max != nil {
		bounds = append(bounds, fmt.Sprintf("<= %g", *m.Max))
	}
	if m.MaxP99.Duration > 0 {
		bounds = append(bounds, "p99 <= "+shortDuration(m.MaxP99.Duration))
	}
	if b := m.Baseline; b != nil {
		if b.MaxDrop != nil {
			bounds = append(bounds, fmt.Sprintf("drop vs baseline <= %g", *b.MaxDrop))
		}
		if b.MaxRatio != nil {
			bounds = append(bounds, fmt.Sprintf("ratio vs baseline <= %g", *b.MaxRatio))
		}
	}
	s := m.Name
	if m.Prometheus != nil {
		s += " (prometheus)"
	}
	if len(bounds) > 0 {
		s += " " + strings.Join(bounds, ", ")
	}
	return s
}

// shortDuration writes d without zero units: "2m", "48h", "1m30s", "500ms".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
)

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

// event tells the event webhooks about ro's current phase (asynchronously).
func (r *Reconciler) event(ctx context.Context, ro *Rollout) {
	r.webhooks(ctx, ro, v1alpha1.WebhookEvent)
	r.metrics.setPhase(ro.Phase)
}

// webhooks POSTs an Event to every webhook of type typ without waiting;
// failures are logged.
func (r *Reconciler) webhooks(ctx context.Context, ro *Rollout, typ string) {
	ev := r.newEvent(ro, typ)
	for _, h := range ro.Policy.Webhooks {
		if h.Type != typ {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if code, err := r.callWebhook(ctx, h, ev); err != nil || code/100 != 2 {
				r.log.Warn("webhook call failed", "webhook", h.Name, "type", typ, "status", code, "error", err)
			}
		}()
	}
}

// confirmPromotion asks every confirm-promotion webhook whether the next
// wave may start; all must answer 2xx. It reports why not otherwise.
func (r *Reconciler) confirmPromotion(ctx context.Context, ro *Rollout) (bool, string) {
	ev := r.newEvent(ro, v1alpha1.WebhookConfirmPromotion)
	for _, h := range ro.Policy.Webhooks {
		if h.Type != v1alpha1.WebhookConfirmPromotion {
			continue
		}
		code, err := r.callWebhook(ctx, h, ev)
		if err != nil {
			return false, fmt.Sprintf("waiting for confirm-promotion webhook %s: %v", h.Name, err)
		}
		if code != http.StatusOK {
			return false, fmt.Sprintf("waiting for confirm-promotion webhook %s: it answered %d", h.Name, code)
		}
	}
	return true, ""
}

func (r *Reconciler) newEvent(ro *Rollout, typ string) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	wave := ""
	if ro.Wave < len(ro.Waves) {
		wave = ro.Waves[ro.Wave].Name
	}
	return Event{Type: typ, RolloutID: ro.ID, Revision: ro.Revision, Version: ro.Version, Wave: wave, Phase: ro.Phase, Reason: ro.Reason, Time: time.Now().UTC()}
}

// callWebhook POSTs ev to h and returns the status code.
func (r *Reconciler) callWebhook(ctx context.Context, h v1alpha1.Webhook, ev Event) (int, error) {
	timeout := h.Timeout.Duration
	if timeout <= 0 {
		timeout = v1alpha1.DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encoding webhook event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("calling webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("calling webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

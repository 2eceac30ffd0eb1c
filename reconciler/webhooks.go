package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/redact"
)

// event tells the Recorder and the event webhooks (asynchronously) about
// ro's current phase.
func (r *Reconciler) event(ctx context.Context, ro *rollout) {
	if r.cfg.Recorder != nil {
		r.cfg.Recorder.RolloutEvent(r.newEvent(ro, v1alpha1.WebhookEvent))
	}
	r.webhooks(ctx, ro, v1alpha1.WebhookEvent)
	r.metrics.setRollout(&ro.Rollout)
}

// webhooks POSTs an admin.Event to every webhook of type typ without waiting;
// failures are logged with the webhook's URL redacted.
func (r *Reconciler) webhooks(ctx context.Context, ro *rollout, typ string) {
	ev := r.newEvent(ro, typ)
	for _, h := range ro.Policy.Webhooks {
		if h.Type != typ {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if code, err := r.callWebhook(ctx, h, ev); err != nil || code/100 != 2 {
				r.log.Warn("webhook call failed", "webhook", h.Name, "url", redact.Opaque(h.URL), "type", typ, "status", code, "error", err)
			}
		}()
	}
}

// hasWebhook reports whether spec has a webhook of type typ.
func hasWebhook(spec v1alpha1.RolloutPolicySpec, typ string) bool {
	for _, h := range spec.Webhooks {
		if h.Type == typ {
			return true
		}
	}
	return false
}

// askConfirmation asks every confirm-promotion webhook, off the loop and
// at most once per interval, whether the next wave may start; all must
// answer 200. The answer lands in ro.bake (confirmed, or confirmWhy) and
// steps the rollout. Each call is bounded by its webhook's timeout.
func (r *Reconciler) askConfirmation(ctx context.Context, ro *rollout, interval time.Duration) {
	if ro.bake.confirming || time.Since(ro.bake.lastConfirm) < interval {
		return
	}
	ro.bake.confirming, ro.bake.lastConfirm = true, time.Now()
	epoch := ro.bake.epoch
	ev := r.newEvent(ro, v1alpha1.WebhookConfirmPromotion)
	var hooks []v1alpha1.Webhook
	timeout := time.Duration(0)
	for _, h := range ro.Policy.Webhooks {
		if h.Type == v1alpha1.WebhookConfirmPromotion {
			hooks = append(hooks, h)
			timeout = max(timeout, webhookTimeout(h))
		}
	}
	r.offLoop(ctx, timeout, func(ctx context.Context) func(context.Context) {
		why := ""
		for _, h := range hooks {
			code, err := r.callWebhook(ctx, h, ev)
			if err != nil {
				why = fmt.Sprintf("waiting for confirm-promotion webhook %s: %v", h.Name, err)
				break
			}
			if code != http.StatusOK {
				why = fmt.Sprintf("waiting for confirm-promotion webhook %s: it answered %d", h.Name, code)
				break
			}
		}
		return func(ctx context.Context) {
			if !r.current(ro, epoch) {
				return
			}
			ro.bake.confirming = false
			ro.bake.confirmed, ro.bake.confirmWhy = why == "", why
			r.stepRollout(ctx)
		}
	})
}

// webhookTimeout is h's timeout, or the documented default.
func webhookTimeout(h v1alpha1.Webhook) time.Duration {
	if h.Timeout.Duration > 0 {
		return h.Timeout.Duration
	}
	return v1alpha1.DefaultWebhookTimeout
}

func (r *Reconciler) newEvent(ro *rollout, typ string) admin.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	wave := ""
	if ro.Wave < len(ro.Waves) {
		wave = ro.Waves[ro.Wave].Name
	}
	return admin.Event{Type: typ, RolloutID: ro.ID, Revision: ro.Revision, Version: ro.Version, Wave: wave, Phase: ro.Phase, Reason: ro.Reason, Time: time.Now().UTC()}
}

// callWebhook POSTs ev to h within h's timeout and returns the status
// code. Its errors never show h's URL, whose path is often a token.
func (r *Reconciler) callWebhook(ctx context.Context, h v1alpha1.Webhook, ev admin.Event) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout(h))
	defer cancel()
	return r.post(ctx, h.URL, ev)
}

// post POSTs ev as JSON to url and returns the status code.
func (r *Reconciler) post(ctx context.Context, url string, ev admin.Event) (int, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encoding webhook event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("calling webhook %s: invalid URL", redact.Opaque(url))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		// net/http's *url.Error quotes the URL; keep only what went wrong.
		if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("calling webhook %s: %w", redact.Opaque(url), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

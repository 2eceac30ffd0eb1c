package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// postHook POSTs body to the admin server's /hooks/github, signed with
// secret unless it is empty, and returns the status code.
func postHook(t testing.TB, adminAddr, secret, delivery, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/hooks/github", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(body))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := (&http.Client{Timeout: e2etest.HTTPTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebhookTriggersFetch: with a poll interval of an hour, only the
// webhook can make a push reach the proxy. A forged delivery gets 401 and
// changes nothing; a signed one makes the proxy serve the pushed config.
// It reports the time from the delivery to the proxy serving the new
// config, five times, with the median.
func TestWebhookTriggersFetch(t *testing.T) {
	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(t)
	repo.Push("reviews: all to v1", reviewsPolicy(v1Addr, v2Addr, allV1))

	t.Run("not served without a secret", func(t *testing.T) {
		m := startController(t, repo.URL, t.TempDir(), time.Hour, "")
		defer m.stop()
		if got := postHook(t, m.ctrl.AdminAddr, "any", "x", `{"ref":"refs/heads/main"}`); got != http.StatusNotFound {
			t.Errorf("POST /hooks/github without --webhook-secret-file: got %d; want 404", got)
		}
	})

	const secret = "e2e-webhook-secret"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := controllerConfig(t, repo.URL, t.TempDir(), time.Hour)
	cfg.WebhookSecretFile = secretFile
	m := startControllerConfig(t, cfg)
	out, _ := startProxy(t, m.ctrl.XDSAddr, "client-1")
	e2etest.Eventually(t, 20*time.Second, "v1 via the proxy", func() string { return only(e2etest.Split(out, "reviews", 5), "v1") })

	payload := `{"ref":"refs/heads/main","repository":{"full_name":"example/policy"}}`
	before := m.status().LastAttemptedRevision
	repo.Push("reviews: all to v2", reviewsPolicy(v1Addr, v2Addr, allV2))
	if got := postHook(t, m.ctrl.AdminAddr, "", "forged-1", payload); got != http.StatusUnauthorized {
		t.Fatalf("unsigned delivery: got %d; want 401", got)
	}
	if got := postHook(t, m.ctrl.AdminAddr, "wrong", "forged-2", payload); got != http.StatusUnauthorized {
		t.Fatalf("wrongly signed delivery: got %d; want 401", got)
	}
	// A trigger only queues a fetch, so the 401 returns before any fetch
	// could finish: watch for one for longer than a signed delivery takes.
	e2etest.Consistently(t, time.Second, "after refused deliveries", func() string {
		if got := m.status().LastAttemptedRevision; got != before {
			return fmt.Sprintf("a refused delivery fetched: revision %s; want still %s", got, before)
		}
		return ""
	})
	if got := only(e2etest.Split(out, "reviews", 5), "v1"); got != "" {
		t.Fatalf("after refused deliveries: %s", got)
	}

	// serve pushes routes, delivers a signed webhook and returns how long
	// the proxy took from the delivery to answer only from want.
	targets := map[string]string{"v1": allV1, "v2": allV2}
	var took []time.Duration
	serve := func(i int, want string, push bool) {
		t.Helper()
		if push {
			repo.Push("reviews: all to "+want, reviewsPolicy(v1Addr, v2Addr, targets[want]))
		}
		start := time.Now()
		if got := postHook(t, m.ctrl.AdminAddr, secret, fmt.Sprintf("delivery-%d", i), payload); got != http.StatusAccepted {
			t.Fatalf("signed delivery %d: got %d; want 202", i, got)
		}
		e2etest.Poll(t, 10*time.Second, 2*time.Millisecond, "the proxy serving "+want, func() error {
			if got := e2etest.Split(out, "reviews", 1); got[want] != 1 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
		d := time.Since(start)
		took = append(took, d)
		t.Logf("webhook %d: delivery to the proxy serving %s took %v", i, want, d)
	}
	serve(0, "v2", false) // pushed above, before the refused deliveries
	for i, want := range []string{"v1", "v2", "v1", "v2"} {
		serve(i+1, want, true)
	}
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("webhook delivery to proxy serving the new config: median %v over %d runs (min %v, max %v; target < 500ms)", median, len(took), took[0], took[len(took)-1])
	if median > 5*time.Second {
		t.Errorf("median %v: the webhook does not trigger a fetch promptly", median)
	}

	// A replayed delivery is acknowledged with 202 (GitHub would otherwise
	// redeliver); that it triggers nothing is checked in package hooks. A
	// new delivery then brings the push.
	repo.Push("reviews: all to v1", reviewsPolicy(v1Addr, v2Addr, allV1))
	if got := postHook(t, m.ctrl.AdminAddr, secret, "delivery-4", payload); got != http.StatusAccepted {
		t.Fatalf("replayed delivery: got %d; want 202", got)
	}
	serve(5, "v1", false)
}

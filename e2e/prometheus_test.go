package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/promtest"
)

// TestRolloutPrometheusGate: a RolloutPolicy metric queried from a real
// Prometheus (Debian's prometheus, scraping the proxies) catches a bad
// change in wave 1 and rolls it back.
func TestRolloutPrometheusGate(t *testing.T) {
	cm := newCanaryMesh(t, "")
	prom := promtest.Start(t, cm.admins)
	promtest.WaitForValue(t, prom, `count(count by (instance) (istio_requests_total{reporter="source"})) == 4`, 60*time.Second)

	// A rollback webhook hears why the rollout was rolled back.
	rollbacks := make(chan admin.Event, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev admin.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err == nil {
			rollbacks <- ev
		}
	}))
	t.Cleanup(hook.Close)

	gate := fmt.Sprintf(`apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
  waves:
  - {percent: 25, bake: 3s}
  - {percent: 100}
  analysis:
    interval: 1s
    failureThreshold: 2
    metrics:
    - name: wave-5xx
      max: 0
      prometheus:
        address: %s
        query: 'sum(istio_requests_total{reporter="source",response_code=~"5..",source_workload=~"{{wave_nodes}}"}) or vector(0)'
  webhooks:
  - {name: pager, type: rollback, url: %q}
`, prom, hook.URL)
	// Adding a RolloutPolicy changes no proxy config: it is applied without
	// a rollout, and governs the pushes after it.
	sha := cm.push("rollout: gate on Prometheus", allV1, gate)
	e2etest.Eventually(t, 30*time.Second, "RolloutPolicy applied", func() string { return synced(cm.mesh, sha, 4) })

	sha = cm.push("reviews: to a broken backend", toBad, gate)
	ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 60*time.Second)
	if !strings.Contains(ro.Reason, "wave-5xx") {
		t.Errorf("reason = %q; want it to name the Prometheus metric wave-5xx", ro.Reason)
	}
	select {
	case ev := <-rollbacks:
		if ev.Type != "rollback" || ev.Phase != admin.PhaseRolledBack || !strings.HasSuffix(ev.Revision, sha) || !strings.Contains(ev.Reason, "wave-5xx") {
			t.Errorf("rollback webhook got %+v; want type rollback, phase RolledBack, revision %s and the reason", ev, sha)
		}
	case <-time.After(10 * time.Second):
		t.Error("the rollback webhook was not called")
	}
	for _, id := range cm.ids {
		if id != ro.Waves[0].Nodes[0] && !cm.load.first(id, "status 503").IsZero() {
			t.Errorf("proxy %s outside wave 1 served the bad version", id)
		}
	}
}

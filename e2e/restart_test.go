package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// TestControllerGoneAndBack: proxies keep serving while the controller is
// down; a controller restarted on the same state directory with Git
// unreachable serves the last good revision at once and says why it cannot
// fetch.
func TestControllerGoneAndBack(t *testing.T) {
	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(t)
	sha := repo.Push("reviews: all to v2", reviewsPolicy(v1Addr, v2Addr, allV2))

	stateDir, xdsAddr := t.TempDir(), testnet.FreeAddr(t)
	m := startController(t, repo.URL, stateDir, 200*time.Millisecond, xdsAddr)
	out, _ := startProxy(t, xdsAddr, "client-1")
	e2etest.Eventually(t, 20*time.Second, "applied", func() string { return synced(m, sha, 1) })

	m.stop()
	if why := only(e2etest.Split(out, "reviews", 50), "v2"); why != "" {
		t.Fatalf("with the controller gone: %s", why)
	}

	// Restart against a Git server that is gone: the state dir's last good
	// revision is served to the reconnecting proxy at once.
	gone := "http://" + testnet.FreeAddr(t) + "/mesh/policy.git"
	m2 := startController(t, gone, stateDir, 200*time.Millisecond, xdsAddr)
	e2etest.Eventually(t, 20*time.Second, "restarted controller serves last good and reports FetchFailed", func() string {
		st := m2.status()
		if !strings.HasSuffix(st.LastAppliedRevision, sha) {
			return "applied " + st.LastAppliedRevision
		}
		if c := st.Ready(); c == nil || c.Reason != "FetchFailed" {
			return "ready not FetchFailed yet"
		}
		return synced(m2, sha, 1)
	})
	if why := only(e2etest.Split(out, "reviews", 50), "v2"); why != "" {
		t.Fatalf("after restart: %s", why)
	}
	st := m2.status()
	if msg := st.Ready().Message; strings.Contains(msg, "password") {
		t.Errorf("status message leaks credentials: %q", msg)
	}
}

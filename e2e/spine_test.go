package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// reviewsPolicy returns the policy files for a reviews service with two
// static endpoints (v1, v2) and the given VirtualService http routes.
func reviewsPolicy(v1, v2 string, routes string) map[string]string {
	return map[string]string{
		"policy/services.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews.default.svc.cluster.local
  location: MESH_INTERNAL
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      http: %s
    labels:
      version: v1
  - address: 127.0.0.1
    ports:
      http: %s
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`, e2etest.PortOf(v1), e2etest.PortOf(v2)),
		"policy/reviews.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
` + routes,
	}
}

const (
	allV1 = `  - route:
    - destination:
        host: reviews
        subset: v1
`
	allV2 = `  - route:
    - destination:
        host: reviews
        subset: v2
`
	fiftyFifty = `  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v2
      weight: 50
`
)

// only reports "" when every response in got is want.
func only(got map[string]int, want string) string {
	for k := range got {
		if k != want {
			return fmt.Sprintf("got %v; want only %q", got, want)
		}
	}
	return ""
}

// TestSpine is the spine's user story: a git push of a VirtualService
// change reaches real traffic through two bundled proxies, and broken
// pushes change nothing while status says why, with the file.
func TestSpine(t *testing.T) {
	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(t)
	repo.Push("reviews: all to v1", reviewsPolicy(v1Addr, v2Addr, allV1))

	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")
	out1, _ := startProxy(t, m.ctrl.XDSAddr, "client-1")
	out2, _ := startProxy(t, m.ctrl.XDSAddr, "client-2")
	outs := []string{out1, out2}

	for _, host := range []string{"reviews", "reviews:9080", "reviews.default.svc.cluster.local:9080"} {
		for _, out := range outs {
			e2etest.Eventually(t, 20*time.Second, "100/0 via "+out+" Host "+host, func() string { return only(e2etest.Split(out, host, 20), "v1") })
		}
	}
	// Absolute-form request URI through the outbound listener, as curl -x sends.
	e2etest.Eventually(t, 5*time.Second, "absolute URI", func() string {
		return only(splitViaProxy(out1, "http://reviews:9080/", 10), "v1")
	})

	t.Run("push shifts traffic to v2", func(t *testing.T) {
		pushed := time.Now()
		repo.Push("reviews: all to v2", reviewsPolicy(v1Addr, v2Addr, allV2))
		for _, out := range outs {
			e2etest.Eventually(t, 20*time.Second, "0/100 via "+out, func() string { return only(e2etest.Split(out, "reviews", 20), "v2") })
		}
		t.Logf("push to traffic on every proxy: %s", time.Since(pushed).Round(time.Millisecond))
	})

	t.Run("push splits traffic 50/50", func(t *testing.T) {
		sha := repo.Push("reviews: 50/50", reviewsPolicy(v1Addr, v2Addr, fiftyFifty))
		e2etest.Eventually(t, 20*time.Second, "revision applied and proxies synced", func() string {
			return synced(m, sha, 2)
		})
		for _, out := range outs {
			got := e2etest.Split(out, "reviews", 400)
			if got["v1"]+got["v2"] != 400 || got["v1"] < 140 || got["v2"] < 140 {
				t.Errorf("via %s: got %v; want about 200/200 (each at least 140)", out, got)
			}
		}
	})

	applied := m.status().LastAppliedRevision

	broken := []struct {
		name, reason, wantMsg string
		files                 map[string]string
	}{
		{
			name:    "broken YAML",
			reason:  "ValidationFailed", // a document sources cannot read is a finding at its line
			wantMsg: "policy/reviews.yaml:6: GM0101",
			files: map[string]string{"policy/reviews.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews
  http:
  - route: {destination: {host: reviews}}
`},
		},
		{
			name:    "unknown subset",
			reason:  "ValidationFailed",
			wantMsg: "policy/reviews.yaml:",
			files:   map[string]string{"policy/reviews.yaml": reviewsPolicy(v1Addr, v2Addr, strings.ReplaceAll(allV1, "subset: v1", "subset: v3"))["policy/reviews.yaml"]},
		},
	}
	for _, tc := range broken {
		t.Run(tc.name+" changes nothing", func(t *testing.T) {
			sha := repo.Push(tc.name, tc.files)
			e2etest.Eventually(t, 20*time.Second, "Ready=False "+tc.reason, func() string {
				st := m.status()
				c := st.Ready()
				if !strings.HasSuffix(st.LastAttemptedRevision, sha) || c == nil || c.Reason != tc.reason {
					return fmt.Sprintf("attempted %s, ready %+v", st.LastAttemptedRevision, c)
				}
				return ""
			})
			st := m.status()
			c := st.Ready()
			if c.Status != "False" || !strings.Contains(c.Message, tc.wantMsg) {
				t.Errorf("Ready = %s %q; want False with a message naming %q", c.Status, c.Message, tc.wantMsg)
			}
			if st.LastAppliedRevision != applied {
				t.Errorf("LastAppliedRevision = %q; want it to stay %q", st.LastAppliedRevision, applied)
			}
			for _, out := range outs {
				got := e2etest.Split(out, "reviews", 100)
				if got["v1"]+got["v2"] != 100 || got["v1"] == 0 || got["v2"] == 0 {
					t.Errorf("via %s after a %s push: got %v; want the 50/50 split to keep serving", out, tc.name, got)
				}
			}
			t.Logf("Ready=False %s: %s", c.Reason, c.Message)
		})
	}

	t.Run("a fixing push recovers", func(t *testing.T) {
		sha := repo.Push("reviews: back to v1", reviewsPolicy(v1Addr, v2Addr, allV1))
		e2etest.Eventually(t, 20*time.Second, "applied and Ready", func() string {
			if why := synced(m, sha, 2); why != "" {
				return why
			}
			if c := m.status().Ready(); c == nil || c.Status != "True" {
				return fmt.Sprintf("Ready = %+v; want True", c)
			}
			return ""
		})
		for _, out := range outs {
			if why := only(e2etest.Split(out, "reviews", 20), "v1"); why != "" {
				t.Error(why)
			}
		}
	})
}

// synced reports "" when the controller applied sha and n proxies are SYNCED.
func synced(m *mesh, sha string, n int) string {
	st := m.status()
	if !strings.HasSuffix(st.LastAppliedRevision, sha) {
		return fmt.Sprintf("applied %q, want %s (ready: %+v)", st.LastAppliedRevision, sha, st.Ready())
	}
	count := 0
	for _, p := range st.Proxies {
		if p.Connected && p.State == admin.StateSynced {
			count++
		}
	}
	if count < n {
		return fmt.Sprintf("%d proxies SYNCED; want %d: %+v", count, n, st.Proxies)
	}
	return ""
}

// splitViaProxy sends n requests for target using out as an HTTP proxy
// (absolute-form request URIs, as curl -x does).
func splitViaProxy(out, target string, n int) map[string]int {
	u, _ := url.Parse("http://" + out)
	return e2etest.SplitWith(proxiedClient(u), target, n)
}

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/faultnet"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// Targets of issue 8: a bad revision is rolled back within rollbackBudget
// of its first failing request, and `gitmesh abort` answers within
// abortBudget, whatever a dependency of the controller is doing.
const (
	rollbackBudget = 5 * time.Second
	abortBudget    = time.Second
)

// fault is one dependency of the controller that hangs.
type fault struct {
	// metrics and webhooks are added to the RolloutPolicy (see faultPolicy).
	metrics, webhooks string
	opts              meshOptions
	// started runs once the mesh serves v1 (e.g. to add a node).
	started func(t *testing.T, cm *canaryMesh)
	// arm starts the fault and disarm ends it; both nil when the fault
	// lasts the whole test (the policy points at a server that hangs).
	arm, disarm func()
	// hits grows each time the controller runs into the fault.
	hits func() int64
}

// blackHole starts a faultnet.BlackHole closed at cleanup.
func blackHole(t testing.TB) *faultnet.BlackHole {
	t.Helper()
	b, err := faultnet.NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestFaultsDoNotStallRollback: with a dependency of the controller that
// accepts connections and never answers, a bad revision is still rolled
// back within 5s of its first failing request (through real proxies under
// steady load), and abort answers within 1s while the fault lasts. Issue 8:
// today every controller I/O runs on the reconciler's one goroutine, so a
// hung dependency stalls rollbacks and the admin API.
func TestFaultsDoNotStallRollback(t *testing.T) {
	faults := []struct {
		name string
		// bake is wave 1's bake: long, so a good revision stays in wave 1
		// for abort; 0s where the confirm-promotion webhook must be asked.
		bake  string
		setup func(t *testing.T) fault
	}{
		{
			// The Git server accepts and never answers once the bad revision
			// was fetched and its rollout started; every poll hits the hole.
			name: "git server hangs", bake: "1h",
			setup: func(t *testing.T) fault {
				var sw *faultnet.Switch
				return fault{
					opts: meshOptions{
						repoURL: func(repo string) string {
							u, err := url.Parse(repo)
							if err != nil {
								t.Fatal(err)
							}
							if sw, err = faultnet.NewSwitch("127.0.0.1:0", u.Host); err != nil {
								t.Fatal(err)
							}
							u.Host = sw.Addr()
							return u.String()
						},
						config:  func(c *controller.Config) { c.FetchTimeout = 2 * time.Second },
						release: func() { sw.Close() },
					},
					arm:    func() { sw.SetMode(faultnet.Hole) },
					disarm: func() { sw.SetMode(faultnet.Pass) },
					hits:   func() int64 { return sw.Swallowed() },
				}
			},
		},
		{
			// A Prometheus metric of the analysis queries a server that never
			// answers; the built-in success rate fails.
			name: "prometheus hangs", bake: "1h",
			setup: func(t *testing.T) fault {
				prom := blackHole(t)
				return fault{
					metrics: fmt.Sprintf(`    - name: wave-5xx
      max: 0
      prometheus:
        address: %s
        query: 'sum(istio_requests_total{response_code=~"5.."}) or vector(0)'
`, prom.URL("")),
					opts: meshOptions{release: func() { prom.Close() }},
					hits: func() int64 { return int64(prom.Accepted()) },
				}
			},
		},
		{
			// The confirm-promotion webhook (default timeout, 10s as
			// documented) never answers while wave 1 bakes the bad revision.
			name: "confirm-promotion webhook hangs", bake: "0s",
			setup: func(t *testing.T) fault {
				hook := blackHole(t)
				return fault{
					webhooks: fmt.Sprintf(`  webhooks:
  - {name: gate, type: confirm-promotion, url: %q}
`, hook.URL("/confirm")),
					opts: meshOptions{release: func() { hook.Close() }},
					hits: func() int64 { return int64(hook.Accepted()) },
				}
			},
		},
		{
			// A fifth node of the fleet announces an admin (metrics) address
			// that never answers; every scrape of the fleet includes it.
			name: "scrape target hangs", bake: "1h",
			setup: func(t *testing.T) fault {
				target := blackHole(t)
				return fault{
					opts: meshOptions{release: func() { target.Close() }},
					started: func(t *testing.T, cm *canaryMesh) {
						startADSNode(t, cm.xdsAddr, nodemeta.Workload{
							ID: "hung-metrics", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
							Labels: map[string]string{"app": "client"}, Outbound: testnet.FreeAddr(t), Admin: target.Addr(),
						})
						e2etest.Eventually(t, 20*time.Second, "the node with a hung admin address is synced", func() string {
							for _, p := range cm.status().Proxies {
								if p.ID == "hung-metrics" {
									if p.State != "SYNCED" {
										return fmt.Sprintf("%+v", p)
									}
									return ""
								}
							}
							return "not connected"
						})
					},
					hits: func() int64 { return int64(target.Accepted()) },
				}
			},
		},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.setup(t)
			policy := faultPolicy(tc.bake, f.metrics, f.webhooks)
			cm := newFaultMesh(t, policy, f.opts)
			if f.started != nil {
				f.started(t, cm)
			}
			rolledBack, fromFirstBad := faultRollback(t, cm, f, policy)
			abort := faultAbort(t, cm, f, policy)
			t.Logf("%s: fault start -> bad revision rolled back: %s (first failing request -> wave-1 proxy on the last good config: %s); abort answered in %s",
				tc.name, rolledBack.Round(time.Millisecond), fromFirstBad.Round(time.Millisecond), abort.took.Round(time.Millisecond))
		})
	}
}

// faultRollback pushes a revision that routes reviews to a backend
// answering 503 and measures its automatic rollback while f lasts: from
// the fault's start (its arming, else the first failing request) and from
// the first failing request to the wave-1 proxy serving v1 again.
func faultRollback(t *testing.T, cm *canaryMesh, f fault, policy string) (rolledBack, fromFirstBad time.Duration) {
	t.Helper()
	pushed := time.Now()
	sha := cm.push("reviews: to a broken backend", toBad, policy)
	id, firstBad := firstServing(t, cm.load, cm.ids, "status 503", pushed, 30*time.Second)
	faultStart := firstBad
	if f.arm != nil {
		f.arm()
		faultStart = time.Now()
	}
	back, ok := servesWithin(cm.load, id, "v1", firstBad, 20*time.Second)
	if !ok {
		t.Errorf("the wave-1 proxy %s still serves the bad revision 20s after its first failing request: the automatic rollback stalled on the fault (%s)", id, rolloutSummary(cm.mesh))
		if f.disarm != nil {
			t.Logf("lifting the fault after 20s so the test can go on")
			f.disarm() // let a stuck controller go, to measure the rest
		}
		if back, ok = servesWithin(cm.load, id, "v1", firstBad, 30*time.Second); !ok {
			t.Fatalf("the wave-1 proxy %s never went back to v1, even with the fault over (%s)", id, rolloutSummary(cm.mesh))
		}
	}
	if f.disarm != nil {
		f.disarm()
	}
	rolledBack, fromFirstBad = back.Sub(faultStart), back.Sub(firstBad)
	if fromFirstBad > rollbackBudget {
		t.Errorf("rollback took %s from the first failing request on %s (%s from the fault's start); want under %s whatever the fault", fromFirstBad.Round(time.Millisecond), id, rolledBack.Round(time.Millisecond), rollbackBudget)
	}
	ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 10*time.Second)
	wave1 := map[string]bool{}
	for _, n := range ro.Waves[0].Nodes {
		wave1[n] = true
	}
	for _, other := range cm.ids {
		if !wave1[other] && !cm.load.firstAfter(other, "status 503", pushed).IsZero() {
			t.Errorf("proxy %s outside wave 1 served the bad revision", other)
		}
	}
	return rolledBack, fromFirstBad
}

// faultAbort pushes a good revision, waits until wave 1 bakes it, starts
// the fault (or waits until the controller runs into it again) and aborts
// through the admin API: the answer must come within abortBudget, and the
// wave-1 proxy go back to v1.
func faultAbort(t *testing.T, cm *canaryMesh, f fault, policy string) adminResult {
	t.Helper()
	pushed := time.Now()
	sha := cm.push("reviews: all to v2", allV2, policy)
	id, _ := firstServing(t, cm.load, cm.ids, "v2", pushed, 30*time.Second)
	cm.waitRollout(t, sha, admin.PhaseBaking, 30*time.Second)
	before := f.hits()
	if f.arm != nil {
		f.arm()
		defer f.disarm()
	}
	e2etest.Eventually(t, 15*time.Second, "the controller runs into the fault", func() string {
		if f.hits() > before {
			return ""
		}
		return "no call reached the hung dependency yet; " + rolloutSummary(cm.mesh)
	})
	res := adminOp(cm.ctrl.AdminAddr, cm.ctrl.Token, admin.Request{Op: admin.OpAbort})
	switch {
	case res.err != nil || res.code != http.StatusOK:
		t.Errorf("abort while the fault lasts: %s; want 200 within %s (the loop is stalled on the fault)", res, abortBudget)
		return res
	case res.took > abortBudget:
		t.Errorf("abort answered %s; want within %s", res, abortBudget)
	}
	if _, ok := servesWithin(cm.load, id, "v1", time.Now(), rollbackBudget); !ok {
		t.Errorf("the wave-1 proxy %s is not back on v1 within %s of abort (%s)", id, rollbackBudget, rolloutSummary(cm.mesh))
	}
	return res
}

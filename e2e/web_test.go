package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// chromiumPath is Debian's Chromium (package chromium).
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for the test (skipped when it is not
// installed, failed when CI=true) and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		} else {
			if os.Getenv("CI") == "true" {
				t.Fatalf("chromium is not installed (apt-get install chromium); CI=true requires it")
			}
			t.Skip("chromium is not installed (apt-get install chromium): skipping the browser test")
		}
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where the test's screenshots go: $GITMESH_TEST_ARTIFACTS,
// or test-artifacts/ at the repository root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GITMESH_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	dir = filepath.Join(dir, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// page drives the web view in a tab.
type page struct {
	t   *testing.T
	ctx context.Context
	dir string
}

// eval evaluates a JavaScript expression returning a string, within 10s.
func (p *page) eval(js string) (string, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[string](js))
}

// waitFor polls js (an expression giving "" when the page shows what is
// awaited, else what it shows) until it gives "" or timeout passes.
func (p *page) waitFor(what, js string, timeout time.Duration) {
	p.t.Helper()
	e2etest.Eventually(p.t, timeout, what, func() string {
		got, err := p.eval(js)
		if err != nil {
			return err.Error()
		}
		return got
	})
}

// text returns the text of the first element matching a CSS selector ("" for none).
func (p *page) text(sel string) string {
	p.t.Helper()
	got, err := p.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
	if err != nil {
		p.t.Fatal(err)
	}
	return got
}

// screenshot saves the page as <name>.png in the artifacts directory.
func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(p.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p.t.Logf("screenshot: %s", path)
}

// toV3 routes reviews to a subset no DestinationRule defines: the
// revision is refused with a diagnostic.
const toV3 = `  - route:
    - destination:
        host: reviews
        subset: v3
`

// TestWebView opens the controller's web view in headless Chromium with
// --admin-auth all (signing in with the token through the page's form)
// and watches, without reloading: the fleet, the traffic graph with
// rates, a good commit rolling out wave by wave with its gate readings,
// a bad one rolled back automatically (a history row with its outcome
// and reason), and a refused revision's diagnostic with file:line.
func TestWebView(t *testing.T) {
	ctx := browser(t)
	policy := faultPolicy("3s", "", "")
	cm := newFaultMesh(t, policy, meshOptions{config: func(cfg *controller.Config) { cfg.AdminAuth = controller.AdminAuthAll }})
	p := &page{t: t, ctx: ctx, dir: artifactsDir(t)}

	navCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := chromedp.Do(navCtx,
		chromedp.Navigate("http://"+cm.ctrl.AdminAddr+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#token"), cm.ctrl.Token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	cancel()
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	// A reload would lose this mark: every later change must arrive over
	// the event stream.
	if _, err := p.eval(`window.__sameDocument = "yes"`); err != nil {
		t.Fatal(err)
	}

	// The fleet: the four client proxies, synced.
	p.waitFor("the fleet table lists 4 synced proxies", fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#fleet tbody tr[data-proxy]')];
		const synced = rows.filter(r => r.dataset.state === %q && r.textContent.includes('sidecar default/client'));
		return synced.length === 4 ? "" : rows.map(r => r.dataset.proxy + ":" + r.dataset.state).join(", ") || "no rows";
	})()`, admin.StateSynced), 30*time.Second)
	if got := p.text("#live"); got != "live" {
		t.Errorf("connection indicator %q; want live", got)
	}

	// The graph: client -> reviews -> reviews v1, with a rate.
	p.waitFor("the graph has edges with a request rate", `(() => {
		const edges = [...document.querySelectorAll('#graph g.edge')];
		const toSvc = edges.find(e => e.dataset.target === 'service:reviews.default.svc.cluster.local' && Number(e.dataset.rate) > 0);
		const toV1 = edges.find(e => e.dataset.target === 'app:default/reviews/v1' && Number(e.dataset.rate) > 0);
		if (!toSvc || !toV1) return "edges: " + edges.map(e => e.dataset.source + "->" + e.dataset.target + "@" + e.dataset.rate).join(", ");
		return /rps/.test(toSvc.textContent) && /% ok/.test(toSvc.textContent) ? "" : "label: " + toSvc.textContent;
	})()`, 30*time.Second)
	p.screenshot("1-fleet-and-graph")

	// A good commit: wave 1 bakes with live gate readings, then promoted.
	good := cm.push("reviews: to v2", allV2, policy)
	p.waitFor("wave 1 of the rollout in progress with a gate reading", fmt.Sprintf(`(() => {
		const box = document.getElementById('rollout');
		if (!box.textContent.includes(%q)) return "rollout: " + box.textContent.slice(0, 200);
		const cur = box.querySelector('.wave.current');
		const row = box.querySelector('tr[data-metric=%q]');
		if (!cur || cur.dataset.wave !== "1" || !row) return "rollout: " + box.textContent.slice(0, 300);
		const cells = [...row.cells].map(c => c.textContent);
		if (cells[2] !== ">= 99%%" || ![%q, %q, %q].includes(cells[4])) return "reading: " + cells.join(" | ");
		const progress = box.querySelector('.wave-progress').textContent;
		return progress === "0/2 waves done" ? "" : "progress: " + progress;
	})()`, good[:8], v1alpha1.MetricSuccessRate, admin.Pass, admin.Fail, admin.Inconclusive), 30*time.Second)
	p.screenshot("2-rollout-wave-1")
	p.waitFor("the good rollout promoted in history", historyRow(good, admin.PhasePromoted), 60*time.Second)

	// A bad commit: rolled back automatically, history says why.
	bad := cm.push("reviews: to a broken backend", toBad, policy)
	p.waitFor("the bad rollout rolled back in history, with its reason", historyRow(bad, admin.PhaseRolledBack), 60*time.Second)
	if got := p.text("#rollout .reason"); !strings.Contains(got, v1alpha1.MetricSuccessRate) {
		t.Errorf("rollout reason %q; want the failed gate", got)
	}
	p.screenshot("3-rolled-back")

	// A refused revision: its diagnostic with file:line.
	refused := cm.push("reviews: to an undefined subset", toV3, policy)
	p.waitFor("the refused revision's diagnostic with file:line", fmt.Sprintf(`(() => {
		const box = document.getElementById('diagnostics');
		const banner = box.querySelector('.refused');
		if (!banner || !banner.textContent.includes(%q)) return "diagnostics: " + box.textContent.slice(0, 300);
		const diag = [...box.querySelectorAll('.diag')].find(d => /^policy\/reviews\.yaml:\d+$/.test(d.querySelector('.origin').textContent));
		if (!diag) return "no diagnostic at policy/reviews.yaml:LINE: " + box.textContent.slice(0, 300);
		return /GM\d{4}/.test(diag.textContent) && diag.textContent.includes('"v3"') ? "" : "diagnostic: " + diag.textContent;
	})()`, refused[:8]), 30*time.Second)
	p.screenshot("4-refused")

	// A later good revision: the refusal stays in view, from history.
	back := cm.push("reviews: back to v1", allV1, policy)
	p.waitFor("the revision after the refusal promoted in history", historyRow(back, admin.PhasePromoted), 60*time.Second)
	p.waitFor("the last refusal and its diagnostic still shown", fmt.Sprintf(`(() => {
		const box = document.getElementById('diagnostics');
		const earlier = box.querySelector('.refused.earlier');
		if (!earlier || !earlier.textContent.includes(%q)) return "diagnostics: " + box.textContent.slice(0, 300);
		const diag = [...box.querySelectorAll('.diag')].find(d => /^policy\/reviews\.yaml:\d+$/.test(d.querySelector('.origin').textContent));
		return diag ? "" : "no diagnostic at policy/reviews.yaml:LINE: " + box.textContent.slice(0, 300);
	})()`, refused[:8]), 30*time.Second)
	p.waitFor("the refused revision in history", historyRow(refused, admin.PhaseRefused), 10*time.Second)
	p.screenshot("5-refusal-remembered")

	if got, err := p.eval(`window.__sameDocument || "reloaded"`); err != nil || got != "yes" {
		t.Errorf("the page was reloaded (%q, %v); want every update over the event stream", got, err)
	}
}

// historyRow is a waitFor expression: the history table has a row of the
// revision whose commit is sha, with outcome phase and a reason.
func historyRow(sha string, phase admin.Phase) string {
	return fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#history tbody tr[data-rollout]')];
		const row = rows.find(r => r.cells[1].title.endsWith(%q));
		if (!row) return "history: " + rows.map(r => r.textContent).join(" / ");
		if (row.dataset.phase !== %q || row.querySelector('.outcome').textContent !== %q) return "row: " + row.textContent;
		return row.querySelector('.reason').textContent ? "" : "no reason: " + row.textContent;
	})()`, sha, phase, phase)
}

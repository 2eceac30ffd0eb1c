package e2e

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// shopDir is a repository laid out as Istio users lay it out: Kubernetes
// Services and Deployments, DestinationRules, a Gateway, and samples that
// replace VirtualServices step by step (see its README.md).
const shopDir = "testdata/shop"

// buildDir writes files (name -> content) into a temporary directory and
// builds it into Objects, as the controller builds a revision.
func buildDir(t *testing.T, files map[string]string) []sources.Object {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, problems, err := sources.Build(dir, ".")
	if err != nil || len(problems) > 0 {
		t.Fatalf("building %s: %v %v", dir, err, problems)
	}
	return objs
}

// readShop returns a file of shopDir, with the gateway's port filled in.
func readShop(t *testing.T, name, gatewayPort string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shopDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "GATEWAY_PORT", gatewayPort)
}

// shopBase returns the repository files every step starts from: the
// Kubernetes manifests as they are, the DestinationRules and the gateway.
func shopBase(t *testing.T, gatewayPort string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"kubernetes/services.yaml", "kubernetes/deployments.yaml"} {
		files["policy/"+name] = readShop(t, name, gatewayPort)
	}
	maps.Copy(files, applySample(t, "istio/destination-rules.yaml", gatewayPort))
	maps.Copy(files, applySample(t, "istio/gateway.yaml", gatewayPort))
	return files
}

// applySample returns the repository files that apply a file of shopDir
// the way `kubectl apply -f` does: each object goes to its own file named
// by kind and name, so it replaces the object of the same kind and name
// that an earlier step put there.
func applySample(t *testing.T, name, gatewayPort string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, o := range buildDir(t, map[string]string{"x.yaml": readShop(t, name, gatewayPort)}) {
		path := fmt.Sprintf("policy/istio/%s-%s.yaml", strings.ToLower(o.Kind), o.Name)
		files[path] = fmt.Sprintf("# %s from %s/%s\n%s", o.Kind, shopDir, name, o.YAML)
	}
	if len(files) == 0 {
		t.Fatalf("%s holds no objects", name)
	}
	return files
}

// TestIstioLayoutSamplesValidate parses every sample on top of the
// Kubernetes manifests, DestinationRules and gateway, as a user applies
// them, and wants what istioctl analyze says of such a repository:
// nothing at warning level or above.
func TestIstioLayoutSamplesValidate(t *testing.T) {
	samples, _ := filepath.Glob(filepath.Join(shopDir, "samples", "*.yaml"))
	if len(samples) < 2 {
		t.Fatal("no samples")
	}
	for _, path := range samples {
		name := "samples/" + filepath.Base(path)
		t.Run(filepath.Base(path), func(t *testing.T) {
			files := shopBase(t, "8080")
			maps.Copy(files, applySample(t, name, "8080"))
			_, diags := compiler.Parse(buildDir(t, files))
			for _, d := range diags {
				if d.Severity != compiler.SeverityInfo {
					t.Errorf("want no errors or warnings, got %s", d)
				}
			}
		})
	}
}

// shopWorkloads reads the Deployments of the repository: each becomes a
// sidecar announcing its pod template's labels, as a pod's would.
func shopWorkloads(t *testing.T) []*registry.Workload {
	t.Helper()
	objs := buildDir(t, map[string]string{"deployments.yaml": readShop(t, "kubernetes/deployments.yaml", "")})
	reg, findings := registry.FromObjects(objs, nodemeta.DefaultNamespace)
	if len(findings) > 0 || len(reg.Workloads()) == 0 {
		t.Fatalf("reading deployments: %d workloads, findings %v", len(reg.Workloads()), findings)
	}
	return reg.Workloads()
}

// getAs sends one GET for host and path to addr with the end-user header
// set to user ("" for none), as a storefront forwards the logged-in user.
// It returns the body (or "status N" for a non-200 answer, "error: ..."
// for a failed request) and how long it took.
func getAs(client *http.Client, addr, host, path, user string) (string, time.Duration) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	if user != "" {
		req.Header.Set("end-user", user)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error(), time.Since(start)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d", resp.StatusCode), time.Since(start)
	}
	return string(b), time.Since(start)
}

// splitAs sends n requests as getAs does and counts the answers.
func splitAs(addr, host, path, user string, n int) map[string]int {
	client := &http.Client{Timeout: 5 * time.Second}
	got := map[string]int{}
	for range n {
		body, _ := getAs(client, addr, host, path, user)
		got[body]++
	}
	return got
}

// TestIstioLayout serves a repository laid out as Istio users lay it out
// (Kubernetes Services and Deployments, DestinationRules, a Gateway, no
// ServiceEntry) from a real git server to a controller, with a sidecar per
// Deployment announcing its pods' labels, a client sidecar and an ingress
// gateway. It walks the traffic-management steps (all v1, a user by
// header, 50/50 and 80/20 shifts, abort and delay for a user) and checks
// each through the client's outbound listener, and the gateway's routes.
func TestIstioLayout(t *testing.T) {
	gw := stableAddr(t)
	repo := e2etest.NewGitRemote(t)
	files := shopBase(t, e2etest.PortOf(gw))
	maps.Copy(files, applySample(t, "samples/route-all-v1.yaml", e2etest.PortOf(gw)))
	repo.Push("shop: kubernetes manifests, destination rules, gateway, all v1", files)
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")

	workloads := shopWorkloads(t)
	for _, w := range workloads {
		app := strings.TrimPrefix(e2etest.Backend(t, w.Name).URL, "http://")
		e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
			ID: w.Name + "-pod", Service: w.Labels["app"], Namespace: w.Namespace, Role: nodemeta.RoleSidecar,
			Labels: w.Labels, Inbound: testnet.FreeAddr(t), App: app,
		})
	}
	out, _ := startProxy(t, m.ctrl.XDSAddr, "client")
	e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "ingressgateway", Service: "gateway", Namespace: "istio-system", Role: nodemeta.RoleGateway,
		Labels: map[string]string{"istio": "ingressgateway"}, Gateway: []string{gw},
	})
	proxies := len(workloads) + 2

	// apply pushes a sample and waits until every proxy runs it.
	apply := func(t *testing.T, sample string) {
		t.Helper()
		sha := repo.Push("shop: apply "+sample, applySample(t, "samples/"+sample, e2etest.PortOf(gw)))
		e2etest.Eventually(t, 20*time.Second, sample+" applied and every proxy SYNCED", func() string { return synced(m, sha, proxies) })
	}

	t.Run("route-all-v1", func(t *testing.T) {
		for _, app := range []string{"frontend", "catalog", "reviews", "ratings"} {
			e2etest.Eventually(t, 20*time.Second, app+" all v1", func() string { return only(splitAs(out, app, "/", "", 20), app+"-v1") })
		}
		if why := only(splitAs(out, "reviews.default.svc.cluster.local:8000", "/", "alice", 20), "reviews-v1"); why != "" {
			t.Errorf("alice by FQDN: %s", why)
		}
	})

	t.Run("gateway", func(t *testing.T) {
		e2etest.Eventually(t, 20*time.Second, "gateway to frontend", func() string { return only(splitAs(gw, "shop.example.com", "/", "", 10), "frontend-v1") })
		if why := only(splitAs(gw, "shop.example.com", "/api/ratings/1", "", 10), "ratings-v1"); why != "" {
			t.Errorf("gateway /api/ratings: %s", why)
		}
	})

	t.Run("route-reviews-user-v2", func(t *testing.T) {
		apply(t, "route-reviews-user-v2.yaml")
		if why := only(splitAs(out, "reviews", "/", "alice", 20), "reviews-v2"); why != "" {
			t.Errorf("end-user alice: %s", why)
		}
		for _, user := range []string{"", "mallory"} {
			if why := only(splitAs(out, "reviews", "/", user, 20), "reviews-v1"); why != "" {
				t.Errorf("end-user %q: %s", user, why)
			}
		}
	})

	t.Run("route-reviews-v2-v3", func(t *testing.T) {
		apply(t, "route-reviews-v2-v3.yaml")
		const n = 400
		got := splitAs(out, "reviews", "/", "", n)
		if got["reviews-v2"]+got["reviews-v3"] != n || got["reviews-v2"] < 140 || got["reviews-v3"] < 140 {
			t.Errorf("got %v; want about 200/200 v2/v3 (each at least 140)", got)
		}
		t.Logf("reviews v2/v3 50/50: %v", got)
	})

	t.Run("route-reviews-80-20", func(t *testing.T) {
		apply(t, "route-reviews-80-20.yaml")
		const n = 500
		got := splitAs(out, "reviews", "/", "", n)
		if got["reviews-v1"]+got["reviews-v3"] != n || got["reviews-v1"] < 340 || got["reviews-v3"] < 60 {
			t.Errorf("got %v; want about 400/100 v1/v3 (at least 340 and 60)", got)
		}
		t.Logf("reviews v1/v3 80/20: %v", got)
	})

	t.Run("route-ratings-abort", func(t *testing.T) {
		apply(t, "route-ratings-abort.yaml")
		if why := only(splitAs(out, "ratings", "/", "alice", 20), "status 500"); why != "" {
			t.Errorf("end-user alice: %s", why)
		}
		if why := only(splitAs(out, "ratings", "/", "", 20), "ratings-v1"); why != "" {
			t.Errorf("no end-user: %s", why)
		}
	})

	t.Run("route-ratings-delay", func(t *testing.T) {
		apply(t, "route-ratings-delay.yaml")
		const delay = 2 * time.Second // the sample's fixedDelay
		client := &http.Client{Timeout: delay + 5*time.Second}
		if body, took := getAs(client, out, "ratings", "/", ""); body != "ratings-v1" || took >= delay {
			t.Errorf("no end-user: got %q in %s; want ratings-v1 at once", body, took)
		}
		body, took := getAs(client, out, "ratings", "/", "alice")
		if body != "ratings-v1" || took < delay {
			t.Errorf("end-user alice: got %q in %s; want ratings-v1 after at least %s", body, took, delay)
		}
		t.Logf("end-user alice: %q in %s", body, took.Round(time.Millisecond))
	})
}

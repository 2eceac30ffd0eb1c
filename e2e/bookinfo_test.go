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
	"github.com/gitmesh/gitmesh/sources"
)

// bookinfoDir holds Istio's bookinfo networking samples, vendored unchanged
// (each file names its source), and services.yaml, the ServiceEntries that
// stand in for bookinfo's Kubernetes Services.
const bookinfoDir = "testdata/bookinfo"

// buildDir writes files (name -> content) into a temporary directory and
// builds it into Objects, as the controller builds a revision.
func buildDir(t *testing.T, files map[string]string) []sources.Object {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, _, err := sources.Build(dir, ".")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func readBookinfo(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bookinfoDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// applySample returns the repository files that apply a bookinfo sample the
// way `kubectl apply -f` does in Istio's task docs: each object goes to its
// own file named by kind and name, so it replaces the object of the same
// kind and name that an earlier sample put there.
func applySample(t *testing.T, name string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, o := range buildDir(t, map[string]string{name: readBookinfo(t, name)}) {
		path := fmt.Sprintf("policy/%s-%s.yaml", strings.ToLower(o.Kind), o.Name)
		files[path] = fmt.Sprintf("# %s from %s/%s\n%s", o.Kind, bookinfoDir, name, o.YAML)
	}
	if len(files) == 0 {
		t.Fatalf("%s holds no objects", name)
	}
	return files
}

// TestBookinfoSamplesValidate parses every bookinfo sample together with
// the services and destination-rule-all.yaml, as a user applies them, and
// wants zero errors.
func TestBookinfoSamplesValidate(t *testing.T) {
	samples, _ := filepath.Glob(filepath.Join(bookinfoDir, "*.yaml"))
	if len(samples) < 2 {
		t.Fatal("no bookinfo samples")
	}
	for _, path := range samples {
		name := filepath.Base(path)
		if name == "services.yaml" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			files := map[string]string{
				"services.yaml":             readBookinfo(t, "services.yaml"),
				"destination-rule-all.yaml": readBookinfo(t, "destination-rule-all.yaml"),
				name:                        readBookinfo(t, name),
			}
			_, diags := compiler.Parse(buildDir(t, files))
			if errs := diags.Errors(); len(errs) > 0 {
				t.Errorf("want no errors, got:\n%s", errs)
			}
			for _, d := range diags {
				t.Log(d)
			}
		})
	}
}

// startWorkload runs a bundled sidecar for one bookinfo workload in front
// of app (an httptest server), announcing service and labels so that the
// ServiceEntry whose workloadSelector matches picks it as an endpoint.
func startWorkload(t *testing.T, xdsAddr, id, service string, labels map[string]string, app string) {
	t.Helper()
	runProxy(t, xdsAddr, nodemeta.Workload{
		ID: id, Service: service, Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: labels, Inbound: freeAddr(t), App: app,
	})
}

// getAs sends one GET for host through the outbound listener with the
// end-user header set to user ("" for none), as bookinfo's productpage
// forwards the logged-in user. It returns the body (or "status N" for a
// non-200 answer, "error: ..." for a failed request) and how long it took.
func getAs(client *http.Client, outbound, host, user string) (string, time.Duration) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+outbound+"/", nil)
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
func splitAs(outbound, host, user string, n int) map[string]int {
	client := &http.Client{Timeout: 5 * time.Second}
	got := map[string]int{}
	for range n {
		body, _ := getAs(client, outbound, host, user)
		got[body]++
	}
	return got
}

// TestBookinfo walks Istio's traffic-management tasks on bookinfo with the
// unchanged samples: request routing (all v1, then jason to v2), traffic
// shifting (v2/v3 50/50) and fault injection (delay, abort for jason),
// through a client sidecar's outbound listener in front of one sidecar per
// bookinfo workload.
func TestBookinfo(t *testing.T) {
	repo := newGitRemote(t)
	files := map[string]string{"policy/services.yaml": readBookinfo(t, "services.yaml")}
	maps.Copy(files, applySample(t, "destination-rule-all.yaml"))
	maps.Copy(files, applySample(t, "virtual-service-all-v1.yaml"))
	repo.push("bookinfo: services, destination-rule-all, virtual-service-all-v1", files)
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")

	workloads := []struct{ app, version string }{
		{"productpage", "v1"}, {"details", "v1"},
		{"reviews", "v1"}, {"reviews", "v2"}, {"reviews", "v3"}, {"ratings", "v1"},
	}
	for _, w := range workloads {
		id := w.app + "-" + w.version
		app := strings.TrimPrefix(backend(t, id).URL, "http://")
		startWorkload(t, m.ctrl.XDSAddr, id, w.app, map[string]string{"app": w.app, "version": w.version}, app)
	}
	out, _ := startProxy(t, m.ctrl.XDSAddr, "client")
	proxies := len(workloads) + 1

	// apply pushes a sample and waits until every proxy runs it.
	apply := func(t *testing.T, sample string) {
		t.Helper()
		sha := repo.push("bookinfo: apply "+sample, applySample(t, sample))
		eventually(t, 20*time.Second, sample+" applied and every proxy SYNCED", func() string { return synced(m, sha, proxies) })
	}

	t.Run("virtual-service-all-v1", func(t *testing.T) {
		for _, svc := range []string{"productpage", "details", "reviews", "ratings"} {
			eventually(t, 20*time.Second, svc+" all v1", func() string { return only(splitAs(out, svc, "", 20), svc+"-v1") })
		}
		if why := only(splitAs(out, "reviews", "jason", 20), "reviews-v1"); why != "" {
			t.Errorf("jason: %s", why)
		}
	})

	t.Run("virtual-service-reviews-test-v2", func(t *testing.T) {
		apply(t, "virtual-service-reviews-test-v2.yaml")
		if why := only(splitAs(out, "reviews", "jason", 20), "reviews-v2"); why != "" {
			t.Errorf("end-user jason: %s", why)
		}
		for _, user := range []string{"", "mallory"} {
			if why := only(splitAs(out, "reviews", user, 20), "reviews-v1"); why != "" {
				t.Errorf("end-user %q: %s", user, why)
			}
		}
	})

	t.Run("virtual-service-reviews-v2-v3", func(t *testing.T) {
		apply(t, "virtual-service-reviews-v2-v3.yaml")
		const n = 400
		got := splitAs(out, "reviews", "", n)
		if got["reviews-v2"]+got["reviews-v3"] != n || got["reviews-v2"] < 140 || got["reviews-v3"] < 140 {
			t.Errorf("got %v; want about 200/200 v2/v3 (each at least 140)", got)
		}
		t.Logf("reviews v2/v3 50/50: %v", got)
	})

	t.Run("virtual-service-ratings-test-abort", func(t *testing.T) {
		apply(t, "virtual-service-ratings-test-abort.yaml")
		if why := only(splitAs(out, "ratings", "jason", 20), "status 500"); why != "" {
			t.Errorf("end-user jason: %s", why)
		}
		if why := only(splitAs(out, "ratings", "", 20), "ratings-v1"); why != "" {
			t.Errorf("no end-user: %s", why)
		}
	})

	t.Run("virtual-service-ratings-test-delay", func(t *testing.T) {
		apply(t, "virtual-service-ratings-test-delay.yaml")
		const delay = 7 * time.Second // the sample's fixedDelay
		client := &http.Client{Timeout: delay + 5*time.Second}
		if body, took := getAs(client, out, "ratings", ""); body != "ratings-v1" || took >= time.Second {
			t.Errorf("no end-user: got %q in %s; want ratings-v1 at once", body, took)
		}
		body, took := getAs(client, out, "ratings", "jason")
		if body != "ratings-v1" || took < delay {
			t.Errorf("end-user jason: got %q in %s; want ratings-v1 after at least %s", body, took, delay)
		}
		t.Logf("end-user jason: %q in %s", body, took.Round(time.Millisecond))
	})
}

package review

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testRepo is a Git repository made with the git CLI, with fixed author
// and dates so its SHAs (and so the golden files) are stable.
type testRepo struct {
	t    *testing.T
	dir  string
	tick int
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	r := &testRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *testRepo) git(args ...string) string {
	r.t.Helper()
	date := fmt.Sprintf("2025-01-01T00:%02d:00Z", r.tick)
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=gitmesh test", "GIT_AUTHOR_EMAIL=test@gitmesh.invalid",
		"GIT_COMMITTER_NAME=gitmesh test", "GIT_COMMITTER_EMAIL=test@gitmesh.invalid",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *testRepo) write(path, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// commit commits everything and tags the commit with tag (when not "").
func (r *testRepo) commit(msg, tag string) {
	r.t.Helper()
	r.tick++
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	if tag != "" {
		r.git("tag", tag)
	}
}

// Policy files of the fixture repository.
const (
	servicesYAML = `# The services and their workloads.
apiVersion: networking.istio.io/v1
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
  workloadSelector:
    labels:
      app: reviews
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts:
  - ratings.default.svc.cluster.local
  location: MESH_INTERNAL
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 10.0.1.1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v1
spec:
  address: 10.0.0.1
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v2
spec:
  address: 10.0.0.2
  labels: {app: reviews, version: v2}
`
	reviewsYAML = `# Traffic policy for reviews.
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
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
`
	ratingsYAML = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - name: admin
    match:
    - uri:
        prefix: /admin
    route:
    - destination:
        host: ratings
  - name: default
    route:
    - destination:
        host: ratings
`
	rolloutYAML = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata:
  name: default
spec:
  waves:
  - {name: canary, percent: 25, bake: 30s}
  - {percent: 100}
  analysis:
    interval: 5s
    metrics:
    - {name: request-success-rate, min: 99}
  webhooks:
  - name: slack
    type: event
    url: https://hooks.example.com/services/T000/B000/XXXXSECRET
`
)

// fixtureRepo builds the fixture history:
//
//	v1.0     init: reviews all to v1, ratings with an /admin route
//	weights  reviews: v1 90% / v2 10%
//	comment  a comment edit only
//	subset   reviews: new subset v3 with a workload
//	rollout  a RolloutPolicy (main^1 after the merge)
//	main     merge of branch feature (ratings: /admin route removed)
//	rollout-v2 (branch)  the RolloutPolicy's waves and webhook URL change
//	broken (branch)      invalid YAML
//	bad-subset (branch)  reviews routes to an undefined subset
func fixtureRepo(t *testing.T) *testRepo {
	r := newTestRepo(t)
	r.write("policy/services.yaml", servicesYAML)
	r.write("policy/reviews.yaml", reviewsYAML)
	r.write("policy/ratings.yaml", ratingsYAML)
	r.write("README.md", "policy for the test mesh\n")
	r.commit("init", "v1.0")

	weights := strings.Replace(reviewsYAML, "        subset: v1\n", `        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
`, 1)
	r.write("policy/reviews.yaml", weights)
	r.commit("reviews: send 10% to v2", "weights")

	r.write("policy/reviews.yaml", strings.Replace(weights, "# Traffic policy for reviews.", "# Traffic policy for reviews (canary of v2).", 1))
	r.commit("reviews: comment only", "comment")

	subset := strings.Replace(r.read("policy/reviews.yaml"), "      version: v2\n", "      version: v2\n  - name: v3\n    labels:\n      version: v3\n", 1)
	r.write("policy/reviews.yaml", subset)
	r.write("policy/services.yaml", servicesYAML+`---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v3
spec:
  address: 10.0.0.3
  labels: {app: reviews, version: v3}
`)
	r.commit("reviews: add subset v3", "subset")

	r.git("checkout", "-q", "-b", "feature")
	r.write("policy/ratings.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - name: default
    route:
    - destination:
        host: ratings
`)
	r.commit("ratings: drop the /admin route", "")

	r.git("checkout", "-q", "main")
	r.write("policy/rollout.yaml", rolloutYAML)
	r.commit("rollout: canary first", "rollout")
	r.tick++
	r.git("merge", "-q", "--no-ff", "-m", "Merge branch feature", "feature")

	r.git("checkout", "-q", "-b", "rollout-v2", "main")
	rollout2 := strings.Replace(rolloutYAML, "  - {name: canary, percent: 25, bake: 30s}\n", "  - {name: canary, percent: 10, bake: 1m}\n  - {percent: 50, bake: 30s}\n", 1)
	r.write("policy/rollout.yaml", strings.Replace(rollout2, "XXXXSECRET", "YYYYSECRET", 1))
	r.commit("rollout: smaller canary, extra wave", "")

	r.git("checkout", "-q", "-b", "broken", "main")
	r.write("policy/reviews.yaml", strings.Replace(r.read("policy/reviews.yaml"), "  hosts:\n  - reviews\n", "  hosts:\n  - reviews\n   bad: [indent\n", 1))
	r.commit("reviews: broken YAML", "")

	r.git("checkout", "-q", "-b", "bad-subset", "main")
	r.write("policy/reviews.yaml", strings.Replace(r.read("policy/reviews.yaml"), "subset: v2", "subset: v9", 1))
	r.commit("reviews: route to an undefined subset", "")

	r.git("checkout", "-q", "main")
	return r
}

func (r *testRepo) read(path string) string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, path))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

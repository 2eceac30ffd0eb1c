package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/grafanatest"
	"github.com/gitmesh/gitmesh/internal/promtest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// dashPolicy is the dashboards' mesh: reviews (a Kubernetes Service whose
// endpoints are the v1 and v2 sidecars) routed by routes, the TCP service
// tcp-echo on tcpPort, and a RolloutPolicy whose first wave is the
// productpage proxy labelled track=canary, judged on success rate.
func dashPolicy(tcpPort, echo, routes string) map[string]string {
	return map[string]string{
		"policy/reviews.yaml": `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
` + routes,
		"policy/tcp.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  ports: [{number: %s, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tcp: %s}}]
`, tcpPort, e2etest.PortOf(echo)),
		"policy/rollout.yaml": `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default, namespace: default}
spec:
  waves:
  - {selector: {matchLabels: {track: canary}}, bake: 4s}
  - {percent: 100}
  analysis:
    interval: 1s
    failureThreshold: 2
    minRequests: 3
    metrics:
    - {name: request-success-rate, min: 99}
`,
	}
}

const (
	routeV1 = `  - route:
    - destination: {host: reviews, subset: v1}
`
	routeSplit = `  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 50
`
	routeAbort = `  - fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v1}
`
)

// dashMesh is the running mesh the dashboards' queries are tested on.
type dashMesh struct {
	*mesh
	repo    *e2etest.GitRemote
	tcpPort string
	echo    string
	targets []string // every /metrics to scrape
}

// TestDashboardQueries runs every PromQL expression of every shipped
// dashboard (panels, rows, template variables) against a real Prometheus
// scraping the controller and six proxies carrying HTTP and TCP traffic
// through a promoted rollout, a rolled-back one and a refused revision,
// as Grafana runs them: a range query over the test's time. Each must
// parse, and return at least one series for one of the mesh's services
// and workloads.
func TestDashboardQueries(t *testing.T) {
	promtest.Binary(t)
	start := time.Now()
	dm := startDashMesh(t)
	prom := promtest.Start(t, dm.targets)
	promtest.WaitForValue(t, prom, `sum(istio_requests_total{reporter="destination"}) > 0 and sum(istio_tcp_received_bytes_total) > 0`, 60*time.Second)

	sha := dm.repo.Push("reviews: half to v2", dashPolicy(dm.tcpPort, dm.echo, routeSplit))
	waitRolloutPhase(t, dm.mesh, sha, admin.PhasePromoted, 90*time.Second)
	sha = dm.repo.Push("reviews: break it", dashPolicy(dm.tcpPort, dm.echo, routeAbort))
	waitRolloutPhase(t, dm.mesh, sha, admin.PhaseRolledBack, 90*time.Second)
	bad := dashPolicy(dm.tcpPort, dm.echo, routeV1)
	bad["policy/broken.yaml"] = "kind: VirtualService\nspec: [\n"
	dm.repo.Push("a revision the controller refuses", bad)
	promtest.WaitForValue(t, prom, `sum(rate(gitmesh_reconcile_total{result!="Succeeded"}[2s])) > 0`, 30*time.Second)
	promtest.WaitForValue(t, prom, `sum(gitmesh_rollback_duration_seconds_count) > 0`, 30*time.Second)
	end := time.Now()

	pq := promQuerier{addr: prom, start: start, end: end}
	for _, d := range grafanatest.Load(t, grafanatest.Dir(t)) {
		t.Run(d.File, func(t *testing.T) {
			var scenarios []map[string]string
			for _, pref := range dashScenarios {
				scenarios = append(scenarios, pq.variables(t, d, pref))
			}
			for _, q := range d.Queries() {
				if q.Variable != nil {
					continue // run by pq.variables
				}
				exprs := []string{q.Expr}
				// Istio's "or on() vector(0)" fallback must not hide a
				// query that returns nothing.
				if left, ok := strings.CutSuffix(q.Expr, " or on() vector(0)"); ok {
					exprs = append(exprs, left)
				}
				for _, expr := range exprs {
					found := false
					for _, vars := range scenarios {
						n, err := pq.rangeSeries(grafanatest.Substitute(expr, vars))
						if err != nil {
							t.Errorf("%s: %s: %v", q.Where, grafanatest.Substitute(expr, vars), err)
							break
						}
						found = found || n > 0
					}
					if !found {
						t.Errorf("%s: no series for any of %v: %s", q.Where, scenarios, expr)
					}
				}
			}
		})
	}
}

// dashScenarios are the variable choices the queries run with: a
// substring the chosen value must contain, per variable (others: All, or
// the first value; All when a variable that has All offers nothing, as
// in Grafana). Grafana's interval variables are fixed.
var dashScenarios = []map[string]string{
	{}, // All namespaces: the sidecar's 404 for an unknown host has destination_service_namespace "unknown"
	{"namespace": "default", "service": "reviews", "reporter": "destination", "workload": "reviews-v1"},
	{"namespace": "default", "service": "reviews", "reporter": "source", "workload": "productpage-1"},
	{"namespace": "default", "service": "tcp-echo", "reporter": "source", "workload": "productpage-2"},
}

// startDashMesh starts the controller, reviews v1 and v2 sidecars in
// front of their apps, and three productpage client sidecars on their own
// loopback IPs (so each binds tcp-echo's port), each sending HTTP to
// reviews, to an unknown host (404) and TCP to tcp-echo until the test
// ends.
func startDashMesh(t *testing.T) *dashMesh {
	t.Helper()
	echo := tcpEchoBackend(t, "echo")
	tcpPort := e2etest.PortOf(testnet.FreeAddr(t))
	dm := &dashMesh{repo: e2etest.NewGitRemote(t), tcpPort: tcpPort, echo: echo}
	sha := dm.repo.Push("reviews: all to v1", dashPolicy(tcpPort, echo, routeV1))
	dm.mesh = startControllerConfig(t, controllerConfig(t, dm.repo.URL, t.TempDir(), 200*time.Millisecond))
	dm.targets = append(dm.targets, dm.ctrl.AdminAddr)
	for _, v := range []string{"v1", "v2"} {
		app := e2etest.Backend(t, v)
		w := e2etest.RunProxy(t, dm.ctrl.XDSAddr, nodemeta.Workload{
			ID: "reviews-" + v, Service: "reviews", Namespace: "default", Role: nodemeta.RoleSidecar,
			Labels: map[string]string{"app": "reviews", "version": v}, Inbound: testnet.FreeAddr(t), App: strings.TrimPrefix(app.URL, "http://"),
		})
		dm.targets = append(dm.targets, w.Admin)
	}
	var clients []nodemeta.Workload
	for i := 1; i <= 3; i++ {
		labels := map[string]string{"app": "productpage", "version": "v1"}
		if i == 1 {
			labels["track"] = "canary"
		}
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		w := e2etest.RunProxy(t, dm.ctrl.XDSAddr, nodemeta.Workload{
			ID: fmt.Sprintf("productpage-%d", i), Service: "productpage", Namespace: "default", Role: nodemeta.RoleSidecar,
			Labels: labels, Outbound: testnet.FreeAddrOn(t, ip),
		})
		clients = append(clients, w)
		dm.targets = append(dm.targets, w.Admin)
	}
	e2etest.Eventually(t, 30*time.Second, "revision "+sha+" on every proxy", func() string { return synced(dm.mesh, sha, 5) })
	for _, c := range clients {
		dashLoad(t, c.Outbound, net.JoinHostPort(strings.Split(c.Outbound, ":")[0], tcpPort))
	}
	return dm
}

// dashLoad sends, until the test ends, a request to reviews through the
// sidecar's outbound listener out every 20ms, one to an unknown host
// (answered 404 by the sidecar) every 10th time, and a TCP exchange with
// tcpAddr every 100ms.
func dashLoad(t *testing.T, out, tcpAddr string) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	client := &http.Client{Timeout: 2 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			host := "reviews:9080"
			if i%10 == 9 {
				host = "nowhere.example:80"
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+out+"/", nil)
			req.Host = host
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if i%5 == 0 {
				if c, err := net.DialTimeout("tcp", tcpAddr, time.Second); err == nil {
					_ = c.SetDeadline(time.Now().Add(time.Second))
					_, _ = c.Write([]byte("ping\n"))
					_, _ = c.Read(make([]byte, 64))
					c.Close()
				}
			}
		}
	}()
}

// waitRolloutPhase waits for the rollout of sha to reach phase.
func waitRolloutPhase(t *testing.T, m *mesh, sha string, phase admin.Phase, timeout time.Duration) {
	t.Helper()
	e2etest.Eventually(t, timeout, fmt.Sprintf("rollout of %s %s", sha[:8], phase), func() string {
		ro := m.status().Rollout
		if ro == nil || !strings.HasSuffix(ro.Revision, sha) || ro.Phase != phase {
			return fmt.Sprintf("rollout %+v", ro)
		}
		return ""
	})
}

// promQuerier runs queries as Grafana does: over [start, end], step 1s.
type promQuerier struct {
	addr       string
	start, end time.Time
}

// grafanaIntervals are Grafana's interval variables for a 100ms scrape
// interval and a 1s step.
var grafanaIntervals = map[string]string{"__rate_interval": "2s", "__interval": "1s", "__range": "5m"}

// rangeSeries runs a range query and returns how many series it yields.
// Its last step is within a second after end, so that it sees the
// samples of the last second as Grafana's "now" does.
func (q promQuerier) rangeSeries(expr string) (int, error) {
	res, err := q.get("/api/v1/query_range", url.Values{"query": {expr}, "step": {"1"},
		"start": {unixTime(q.start)}, "end": {unixTime(q.end.Add(time.Second))}})
	if err != nil {
		return 0, err
	}
	var series []json.RawMessage
	if err := json.Unmarshal(res, &series); err != nil {
		return 0, fmt.Errorf("decoding result: %w", err)
	}
	return len(series), nil
}

// variables resolves d's template variables in order, as Grafana does:
// a query variable's values come from its query (label_values or
// query_result with its regex); the value chosen contains pref[name], or
// is All (allValue), or the first value. It fails t when a preferred value
// is not offered.
func (q promQuerier) variables(t *testing.T, d grafanatest.Dashboard, pref map[string]string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for k, v := range grafanaIntervals {
		vars[k] = v
	}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			continue
		case "custom":
			vals := make([]string, 0, len(v.Options))
			for _, o := range v.Options {
				vals = append(vals, o.Value)
			}
			vars[v.Name] = choose(t, d, v, vals, pref)
		case "query":
			expr := grafanatest.Substitute(v.PromQL(), vars)
			vals, err := q.variableValues(expr, v.Regex)
			if err != nil {
				t.Fatalf("%s: variable $%s: %s: %v", d.File, v.Name, expr, err)
			}
			if len(vals) == 0 && !v.IncludeAll {
				t.Fatalf("%s: variable $%s offers no value: %s", d.File, v.Name, expr)
			}
			vars[v.Name] = choose(t, d, v, vals, pref)
		default:
			t.Fatalf("%s: variable $%s of type %s", d.File, v.Name, v.Type)
		}
	}
	return vars
}

func choose(t *testing.T, d grafanatest.Dashboard, v grafanatest.Variable, vals []string, pref map[string]string) string {
	t.Helper()
	if want, ok := pref[v.Name]; ok {
		for _, val := range vals {
			if strings.Contains(val, want) {
				return val
			}
		}
		t.Fatalf("%s: variable $%s offers %q; want one containing %q", d.File, v.Name, vals, want)
	}
	if v.IncludeAll {
		return v.AllValue
	}
	return vals[0]
}

var (
	labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
	queryResult = regexp.MustCompile(`^query_result\((.*)\)$`)
)

// variableValues evaluates a Prometheus variable query as Grafana's
// Prometheus data source does, over [start, end].
func (q promQuerier) variableValues(expr, regex string) ([]string, error) {
	window := url.Values{"start": {unixTime(q.start)}, "end": {unixTime(q.end)}}
	var vals []string
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		window.Set("match[]", m[1])
		res, err := q.get("/api/v1/label/"+m[2]+"/values", window)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(res, &vals); err != nil {
			return nil, err
		}
	} else if m := queryResult.FindStringSubmatch(expr); m != nil {
		window.Set("query", m[1])
		window.Set("time", unixTime(q.end))
		res, err := q.get("/api/v1/query", window)
		if err != nil {
			return nil, err
		}
		var series []struct {
			Metric map[string]string `json:"metric"`
		}
		if err := json.Unmarshal(res, &series); err != nil {
			return nil, err
		}
		for _, s := range series {
			var parts []string
			for k, v := range s.Metric {
				parts = append(parts, fmt.Sprintf("%s=%q", k, v))
			}
			sort.Strings(parts)
			vals = append(vals, "{"+strings.Join(parts, ",")+"}")
		}
	} else {
		return nil, fmt.Errorf("not label_values(...) or query_result(...)")
	}
	if regex != "" {
		re, err := regexp.Compile(strings.TrimSuffix(strings.TrimPrefix(regex, "/"), "/"))
		if err != nil {
			return nil, fmt.Errorf("regex %s: %w", regex, err)
		}
		var out []string
		for _, v := range vals {
			if m := re.FindStringSubmatch(v); m != nil {
				if len(m) > 1 {
					v = m[1]
				}
				out = append(out, v)
			}
		}
		vals = out
	}
	slices.Sort(vals)
	return slices.Compact(vals), nil
}

// get calls a Prometheus API endpoint and returns data.result, or data
// itself for the label values API.
func (q promQuerier) get(path string, params url.Values) (json.RawMessage, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(q.addr + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding response (%s): %w", resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", r.Error)
	}
	if strings.Contains(path, "/label/") {
		return r.Data, nil
	}
	var data struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return nil, err
	}
	return data.Result, nil
}

func unixTime(t time.Time) string { return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64) }

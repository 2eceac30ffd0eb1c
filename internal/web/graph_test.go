package web

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/faultnet"
	"github.com/gitmesh/gitmesh/xds"
)

// client1Metrics is a real /metrics page of a bundled client proxy
// (client-1) sending to reviews split 60/30/10 over v1, v2 and a subset
// without endpoints (503 UH), trimmed to two families.
const client1Metrics = "testdata/client-1.metrics"

func readCounts(t *testing.T, path string) counts {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := parseCounts(f, expfmt.NewFormat(expfmt.TypeTextPlain))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func scaled(c counts, f float64) counts {
	out := counts{}
	for k, v := range c {
		out[k] = v * f
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// TestGraphFromProxyMetrics: two scrapes of a real proxy's page 10s apart
// (the second with every counter doubled) give Kiali's picture: client ->
// reviews with the rate and success rate of all its requests, reviews ->
// v1 and v2 with their share of what reviews served.
func TestGraphFromProxyMetrics(t *testing.T) {
	c := readCounts(t, client1Metrics)
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	w := window{span: 30 * time.Second}
	w.add(scrape{at: t0, byProxy: map[string]counts{"client-1": c}})
	w.add(scrape{at: t0.Add(10 * time.Second), byProxy: map[string]counts{"client-1": scaled(c, 2)}})
	g := w.graph()

	if g.WindowSeconds != 10 || g.Proxies != 1 || !g.Time.Equal(t0.Add(10*time.Second)) {
		t.Errorf("window %vs, %d proxies, time %s; want 10s, 1, %s", g.WindowSeconds, g.Proxies, g.Time, t0.Add(10*time.Second))
	}
	var ids []string
	for _, n := range g.Nodes {
		ids = append(ids, fmt.Sprintf("%s %s %s/%s %q", n.ID, n.Kind, n.Namespace, n.Name, n.Version))
	}
	wantNodes := []string{
		`app:default/client/unknown app default/client ""`,
		`app:default/reviews/v1 app default/reviews "v1"`,
		`app:default/reviews/v2 app default/reviews "v2"`,
		`service:reviews.default.svc.cluster.local service default/reviews ""`,
	}
	if got, want := strings.Join(ids, "\n"), strings.Join(wantNodes, "\n"); got != want {
		t.Errorf("nodes:\n%s\nwant:\n%s", got, want)
	}

	// The page's requests: 35 answered 503 (UH), 179 by v1, 89 by v2.
	const svc = "service:reviews.default.svc.cluster.local"
	tests := []struct {
		source, target       string
		rate, requests, succ float64
		share                float64 // -1: none
	}{
		{"app:default/client/unknown", svc, 30.3, 303, 100 * 268.0 / 303, -1},
		{svc, "app:default/reviews/v1", 17.9, 179, 100, 100 * 179.0 / 268},
		{svc, "app:default/reviews/v2", 8.9, 89, 100, 100 * 89.0 / 268},
	}
	if len(g.Edges) != len(tests) {
		t.Fatalf("%d edges: %+v; want %d", len(g.Edges), g.Edges, len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.source+"->"+tt.target, func(t *testing.T) {
			e := g.Edges[i]
			if e.Source != tt.source || e.Target != tt.target {
				t.Fatalf("edge %d is %s -> %s", i, e.Source, e.Target)
			}
			if !near(e.Rate, tt.rate) || !near(e.Requests, tt.requests) {
				t.Errorf("rate %v, requests %v; want %v, %v", e.Rate, e.Requests, tt.rate, tt.requests)
			}
			if e.SuccessRate == nil || !near(*e.SuccessRate, tt.succ) {
				t.Errorf("success rate %v; want %v", e.SuccessRate, tt.succ)
			}
			switch {
			case tt.share < 0 && e.Share != nil:
				t.Errorf("share %v; want none", *e.Share)
			case tt.share >= 0 && (e.Share == nil || !near(*e.Share, tt.share)):
				t.Errorf("share %v; want %v", e.Share, tt.share)
			}
		})
	}
}

// TestGraphWindow: a single scrape gives cumulative counts without rates;
// a counter that went down (a restarted proxy) counts from zero; a proxy
// first seen in the newest scrape waits for its second; scrapes older than
// twice the window are forgotten.
func TestGraphWindow(t *testing.T) {
	c := readCounts(t, client1Metrics)
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	edge := func(g admin.Graph) admin.GraphEdge {
		for _, e := range g.Edges {
			if e.Source == "app:default/client/unknown" {
				return e
			}
		}
		t.Fatalf("no edge from the client in %+v", g)
		return admin.GraphEdge{}
	}

	t.Run("one scrape", func(t *testing.T) {
		w := window{span: 30 * time.Second}
		w.add(scrape{at: t0, byProxy: map[string]counts{"client-1": c}})
		g := w.graph()
		if e := edge(g); g.WindowSeconds != 0 || e.Rate != 0 || e.Requests != 303 {
			t.Errorf("window %v, rate %v, requests %v; want 0, 0, 303", g.WindowSeconds, e.Rate, e.Requests)
		}
	})
	t.Run("counter reset", func(t *testing.T) {
		w := window{span: 30 * time.Second}
		w.add(scrape{at: t0, byProxy: map[string]counts{"client-1": scaled(c, 3)}})
		w.add(scrape{at: t0.Add(10 * time.Second), byProxy: map[string]counts{"client-1": c}})
		if e := edge(w.graph()); !near(e.Requests, 303) || !near(e.Rate, 30.3) {
			t.Errorf("requests %v, rate %v; want 303, 30.3 (counted from zero)", e.Requests, e.Rate)
		}
	})
	t.Run("new proxy", func(t *testing.T) {
		w := window{span: 30 * time.Second}
		w.add(scrape{at: t0, byProxy: map[string]counts{"client-1": c}})
		w.add(scrape{at: t0.Add(10 * time.Second), byProxy: map[string]counts{"client-1": scaled(c, 2), "client-2": scaled(c, 50)}})
		if e := edge(w.graph()); !near(e.Requests, 303) {
			t.Errorf("requests %v; want 303 (client-2 has no rate yet)", e.Requests)
		}
	})
	t.Run("window slides", func(t *testing.T) {
		w := window{span: 30 * time.Second}
		for i := range 10 {
			w.add(scrape{at: t0.Add(time.Duration(i) * 10 * time.Second), byProxy: map[string]counts{"client-1": scaled(c, float64(i+1))}})
		}
		g := w.graph()
		if len(w.scrapes) != 4 || g.WindowSeconds != 30 || !near(edge(g).Rate, 30.3) {
			t.Errorf("%d scrapes kept, window %vs, rate %v; want 4, 30s, 30.3", len(w.scrapes), g.WindowSeconds, edge(g).Rate)
		}
		w.add(scrape{at: t0.Add(10 * time.Minute), byProxy: map[string]counts{"client-1": c}})
		if len(w.scrapes) != 1 {
			t.Errorf("%d scrapes kept after a quiet spell; want only the newest", len(w.scrapes))
		}
	})
}

// TestGraphReporters: a request between two sidecars is reported by both;
// the graph counts it once, from the sender. A service only clients
// outside the mesh call is drawn from the unknown node.
func TestGraphReporters(t *testing.T) {
	out := func(src, svc, version string, fail bool) seriesKey {
		return seriesKey{outbound: true, srcWorkload: src + "-1", srcNamespace: "default", srcApp: src, srcVersion: "v1",
			dstService: svc + ".default.svc.cluster.local", dstServiceName: svc, dstNamespace: "default",
			dstWorkload: svc + "-" + version, dstApp: svc, dstVersion: version, fail: fail}
	}
	in := func(svc, version string, peer bool) seriesKey {
		return seriesKey{meshPeer: peer, srcWorkload: unknown, srcNamespace: unknown, srcApp: unknown, srcVersion: unknown,
			dstService: svc + ".default.svc.cluster.local", dstServiceName: svc, dstNamespace: "default",
			dstWorkload: svc + "-" + version, dstApp: svc, dstVersion: version}
	}
	tests := []struct {
		name    string
		traffic map[seriesKey]flow
		want    []string
	}{
		{
			name: "sidecar to sidecar, mTLS",
			traffic: map[seriesKey]flow{
				out("productpage", "reviews", "v1", false): {requests: 90, rate: 9},
				out("productpage", "reviews", "v1", true):  {requests: 10, rate: 1},
				in("reviews", "v1", true):                  {requests: 100, rate: 10},
			},
			want: []string{
				"app:default/productpage/v1 -> service:reviews.default.svc.cluster.local 10rps 90% ok",
				"service:reviews.default.svc.cluster.local -> app:default/reviews/v1 10rps 90% ok 100% share",
			},
		},
		{
			name: "sidecar to sidecar, plain text",
			traffic: map[seriesKey]flow{
				out("productpage", "reviews", "v1", false): {requests: 100, rate: 10},
				in("reviews", "v1", false):                 {requests: 100, rate: 10},
			},
			want: []string{
				"app:default/productpage/v1 -> service:reviews.default.svc.cluster.local 10rps 100% ok",
				"service:reviews.default.svc.cluster.local -> app:default/reviews/v1 10rps 100% ok 100% share",
			},
		},
		{
			name: "from outside the mesh",
			traffic: map[seriesKey]flow{
				in("productpage", "v1", false): {requests: 50, rate: 5},
			},
			want: []string{
				"service:productpage.default.svc.cluster.local -> app:default/productpage/v1 5rps 100% ok 100% share",
				"unknown -> service:productpage.default.svc.cluster.local 5rps 100% ok",
			},
		},
		{
			name: "no route, idle series",
			traffic: map[seriesKey]flow{
				{outbound: true, srcWorkload: "a", srcApp: "a", srcNamespace: "default", srcVersion: unknown, dstService: unknown}: {requests: 5, rate: 1},
				out("productpage", "reviews", "v1", false): {requests: 0, rate: 0},
			},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := buildGraph(tt.traffic)
			var got []string
			for _, e := range g.Edges {
				s := fmt.Sprintf("%s -> %s %vrps %v%% ok", e.Source, e.Target, e.Rate, *e.SuccessRate)
				if e.Share != nil {
					s += fmt.Sprintf(" %v%% share", *e.Share)
				}
				got = append(got, s)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("edges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// fleet is a Fleet of fixed nodes.
type fleet []xds.NodeStatus

func (f fleet) Nodes() []xds.NodeStatus { return f }

// metricsServer serves path as a proxy's /metrics, every counter times the
// number of the request (so that consecutive scrapes see traffic).
func metricsServer(t *testing.T, path string) *httptest.Server {
	t.Helper()
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/metrics" {
			http.NotFound(w, req)
			return
		}
		n++
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, line := range strings.Split(strings.TrimSpace(string(page)), "\n") {
			if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
				var v float64
				fmt.Sscan(line[i+1:], &v)
				line = fmt.Sprintf("%s %v", line[:i], v*float64(n))
			}
			fmt.Fprintln(w, line)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestScrapeFleet scrapes real HTTP servers: a proxy's page, a proxy that
// refuses connections (named in Errors, its traffic left out), and nodes
// without an admin address or no longer connected (skipped).
func TestScrapeFleet(t *testing.T) {
	srv := metricsServer(t, client1Metrics)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	nodes := fleet{
		{Workload: nodemeta.Workload{ID: "client-1", Admin: strings.TrimPrefix(srv.URL, "http://")}, Connected: true},
		{Workload: nodemeta.Workload{ID: "client-2", Admin: closed}, Connected: true},
		{Workload: nodemeta.Workload{ID: "client-3"}, Connected: true},
		{Workload: nodemeta.Workload{ID: "client-4", Admin: closed}, Connected: false},
	}
	s := New(nil, nodes, WithGraphInterval(time.Second))
	s.coldGap = 10 * time.Millisecond
	g := s.sampleGraph(context.Background(), time.Second)
	if g.Proxies != 1 || len(g.Errors) != 1 || !strings.HasPrefix(g.Errors[0], "client-2: ") {
		t.Errorf("%d proxies, errors %q; want 1 and client-2's", g.Proxies, g.Errors)
	}
	if g.WindowSeconds <= 0 || len(g.Edges) != 3 {
		t.Fatalf("window %vs, edges %+v; want rates over two scrapes on 3 edges", g.WindowSeconds, g.Edges)
	}
	// Between the two scrapes every counter grew by its value in the page.
	if e := g.Edges[0]; e.Requests != 303 || !near(e.Rate, 303/g.WindowSeconds) {
		t.Errorf("client edge: %v requests at %v rps; want 303 over %vs", e.Requests, e.Rate, g.WindowSeconds)
	}
}

// TestScrapeFleetFaults: a proxy that accepts and never answers, one that
// answers 500 and one whose page is not metrics do not stop the graph:
// each is named in Errors within the scrape's deadline, and the others'
// traffic is drawn.
func TestScrapeFleetFaults(t *testing.T) {
	good := metricsServer(t, client1Metrics)
	hole, err := faultnet.NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hole.Close() })
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	lying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "istio_requests_total{reporter=\"source\" this is not a metric")
	}))
	t.Cleanup(lying.Close)
	nodes := fleet{
		{Workload: nodemeta.Workload{ID: "good", Admin: good.URL}, Connected: true},
		{Workload: nodemeta.Workload{ID: "hangs", Admin: hole.Addr()}, Connected: true},
		{Workload: nodemeta.Workload{ID: "fails", Admin: failing.URL}, Connected: true},
		{Workload: nodemeta.Workload{ID: "lies", Admin: lying.URL}, Connected: true},
	}
	s := New(nil, nodes, WithGraphInterval(300*time.Millisecond))
	s.coldGap = 10 * time.Millisecond
	start := time.Now()
	g := s.sampleGraph(context.Background(), time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the graph took %s; want each scrape bounded by the graph interval", took)
	}
	var failed []string
	for _, e := range g.Errors {
		id, _, _ := strings.Cut(e, ": ")
		failed = append(failed, id)
	}
	if got := strings.Join(failed, ","); got != "fails,hangs,lies" || g.Proxies != 1 || len(g.Edges) != 3 {
		t.Errorf("errors %q, %d proxies, %d edges; want fails,hangs,lies named, good's 3 edges drawn", g.Errors, g.Proxies, len(g.Edges))
	}
}

package analysis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
)

// The proxy's metric labels and buckets (proxy/metrics.go).
var (
	istioLabels = []string{
		"reporter",
		"source_workload", "source_workload_namespace", "source_app", "source_version",
		"destination_workload", "destination_workload_namespace", "destination_app", "destination_version",
		"destination_service", "destination_service_name", "destination_service_namespace",
		"request_protocol", "response_code", "response_flags",
	}
	istioBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
)

// fakeProxy exports request metrics with the bundled proxy's names,
// labels and buckets, from its own client_golang registry, on an httptest
// server's /metrics.
type fakeProxy struct {
	node     string // source_workload of what it serves
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	srv      *httptest.Server // negotiates the format: protobuf for Scrape
	text     *httptest.Server // always answers in the text format
}

func newFakeProxy(t testing.TB, node string) *fakeProxy {
	t.Helper()
	p := &fakeProxy{
		node: node,
		reg:  prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total", Help: "Requests handled by the proxy.",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "Request duration in milliseconds.", Buckets: istioBuckets,
		}, istioLabels),
	}
	p.reg.MustRegister(p.requests, p.duration, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gitmesh_proxy_xds_updates_applied_total", Help: "Unrelated.",
	}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}))
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.text = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Accept", "text/plain;version=0.0.4")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(p.text.Close)
	return p
}

// addr is the proxy's admin address, host:port.
func (p *fakeProxy) addr() string { return p.srv.Listener.Addr().String() }

// textAddr is an admin address that answers in the text format only.
func (p *fakeProxy) textAddr() string { return p.text.Listener.Addr().String() }

// serve records n requests as the proxy does: reporter, destination
// service and version, response code and duration in milliseconds.
func (p *fakeProxy) serve(n int, reporter, service, version, code string, ms float64) {
	values := []string{
		reporter,
		p.node, "default", "frontend", "v1",
		"reviews-" + version, "default", "reviews", version,
		service + ".default.svc.cluster.local", service, "default",
		"http", code, "-",
	}
	for range n {
		p.requests.WithLabelValues(values...).Inc()
		p.duration.WithLabelValues(values...).Observe(ms)
	}
}

func TestScrape(t *testing.T) {
	for _, format := range []string{"protobuf", "text"} {
		t.Run(format, func(t *testing.T) { testScrape(t, format) })
	}
}

func testScrape(t *testing.T, format string) {
	p := newFakeProxy(t, "frontend-1")
	addr, url := p.addr(), p.srv.URL
	if format == "text" {
		addr, url = p.textAddr(), p.text.URL
	}
	p.serve(90, "source", "reviews", "v1", "200", 20)        // (10, 25]
	p.serve(5, "source", "reviews", "v2", "503", 2)          // (1, 5]
	p.serve(3, "source", "ratings", "v1", "404", 700)        // (500, 1000]
	p.serve(2, "source", "ratings", "v1", "0", 3000)         // client went away, (2500, 5000]
	p.serve(50, "destination", "reviews", "v1", "500", 9000) // inbound: not counted

	got, err := analysis.Scrape(context.Background(), p.srv.Client(), addr)
	if err != nil {
		t.Fatalf("Scrape: %v", err)
	}
	if got.Requests != 100 || got.Failures != 5 {
		t.Errorf("got requests %v, failures %v; want 100, 5", got.Requests, got.Failures)
	}
	wantCounts := map[float64]float64{0.5: 0, 1: 0, 5: 5, 10: 5, 25: 95, 500: 95, 1000: 98, 2500: 98, 5000: 100, 3600000: 100, inf: 100}
	if len(got.Buckets) != len(istioBuckets)+1 {
		t.Fatalf("got %d buckets; want %d", len(got.Buckets), len(istioBuckets)+1)
	}
	for _, b := range got.Buckets {
		if want, ok := wantCounts[b.UpperBound]; ok && b.Count != want {
			t.Errorf("bucket le=%v: got %v; want %v", b.UpperBound, b.Count, want)
		}
	}
	if rate, _ := got.SuccessRate(); rate != 95 {
		t.Errorf("success rate: got %v; want 95", rate)
	}
	// rank 99 is the 1st of the 2 requests in (2500, 5000].
	if p99, _ := got.Quantile(0.99); p99.Milliseconds() != 3750 {
		t.Errorf("p99: got %v; want 3.75s", p99)
	}

	// A base URL works too, and a second scrape after more traffic gives
	// the delta by Sub.
	p.serve(10, "source", "reviews", "v1", "500", 20)
	later, err := analysis.Scrape(context.Background(), p.srv.Client(), url+"/")
	if err != nil {
		t.Fatalf("Scrape: %v", err)
	}
	delta := later.Sub(got)
	if delta.Requests != 10 || delta.Failures != 10 {
		t.Errorf("delta: got requests %v, failures %v; want 10, 10", delta.Requests, delta.Failures)
	}
}

// TestScrapeBundledProxy scrapes the real proxy's admin handler: before
// any traffic its page (Go and process collectors, xDS metrics) parses to
// a zero Sample.
func TestScrapeBundledProxy(t *testing.T) {
	px, err := proxy.New(proxy.Config{XDSAddr: "127.0.0.1:1", Workload: nodemeta.Workload{ID: "reviews-v2-1", Service: "reviews"}})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	srv := httptest.NewServer(px.AdminHandler())
	t.Cleanup(srv.Close)
	got, err := analysis.Scrape(context.Background(), srv.Client(), srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("Scrape: %v", err)
	}
	if want := (analysis.Sample{}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestScrapeErrors(t *testing.T) {
	page := func(body string, status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	tests := []struct {
		name    string
		addr    string
		wantErr string
	}{
		{"not found", page("nope", http.StatusNotFound), "404"},
		{"not metrics", page("<html>hello</html>", http.StatusOK), "parsing metrics"},
		{"refused", closedAddr(t), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := analysis.Scrape(context.Background(), nil, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.addr) {
				t.Errorf("got %v; want an error naming %s with %q", err, tt.addr, tt.wantErr)
			}
		})
	}
}

func TestScrapeUntypedAndNoHistogram(t *testing.T) {
	const page = `istio_requests_total{reporter="source",response_code="200"} 7
istio_requests_total{reporter="source",response_code="502"} 3
istio_requests_total{reporter="destination",response_code="502"} 100
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, page) }))
	t.Cleanup(srv.Close)
	got, err := analysis.Scrape(context.Background(), srv.Client(), srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("Scrape: %v", err)
	}
	if want := (analysis.Sample{Requests: 10, Failures: 3}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestScrapeAll(t *testing.T) {
	a, b := newFakeProxy(t, "frontend-1"), newFakeProxy(t, "frontend-2")
	a.serve(3, "source", "reviews", "v1", "200", 20)
	b.serve(4, "source", "reviews", "v1", "503", 20)
	down := closedAddr(t)

	got, err := analysis.ScrapeAll(context.Background(), nil, []string{a.addr(), b.addr(), down, a.addr()})
	if err == nil || !strings.Contains(err.Error(), down) {
		t.Errorf("got error %v; want one naming %s", err, down)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
		t.Errorf("got %d joined errors; want 1: %v", n, err)
	}
	if len(got) != 2 || got[a.addr()].Requests != 3 || got[b.addr()].Failures != 4 {
		t.Errorf("got %v; want the samples of %s and %s", got, a.addr(), b.addr())
	}
	if _, ok := got[down]; ok {
		t.Errorf("got a sample for unreachable %s; want none", down)
	}

	all, err := analysis.ScrapeAll(context.Background(), nil, []string{a.addr(), b.addr()})
	if err != nil {
		t.Fatalf("ScrapeAll: %v", err)
	}
	if sum := analysis.Delta(all, nil); sum.Requests != 7 || sum.Failures != 4 {
		t.Errorf("sum: got %v; want 7 requests, 4 failures", sum)
	}
}

func TestScrapeAllCanceled(t *testing.T) {
	p := newFakeProxy(t, "frontend-1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := analysis.ScrapeAll(ctx, nil, []string{p.addr()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want context.Canceled", err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

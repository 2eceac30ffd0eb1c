package analysis_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/promtest"
	"github.com/gitmesh/gitmesh/reconciler/analysis"
)

// TestPrometheusQueryResponses checks how Prometheus.Query reads the HTTP
// API's answers, from a server that answers like Prometheus.
func TestPrometheusQueryResponses(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    float64
		wantErr string
		notOne  bool // want ErrNotSingleValue
	}{
		{
			name: "scalar",
			body: `{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"2.5"]}}`,
			want: 2.5,
		},
		{
			name: "one-sample vector",
			body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000,"99.5"]}]}}`,
			want: 99.5,
		},
		{
			name:    "empty vector",
			body:    `{"status":"success","data":{"resultType":"vector","result":[]}}`,
			wantErr: "empty vector", notOne: true,
		},
		{
			name: "several samples",
			body: `{"status":"success","data":{"resultType":"vector","result":[` +
				`{"metric":{"pod":"a"},"value":[1,"1"]},{"metric":{"pod":"b"},"value":[1,"2"]}]}}`,
			wantErr: "2 samples", notOne: true,
		},
		{
			name:    "range vector",
			body:    `{"status":"success","data":{"resultType":"matrix","result":[]}}`,
			wantErr: `result type "matrix"`, notOne: true,
		},
		{
			name:    "PromQL error",
			status:  http.StatusBadRequest,
			body:    `{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}`,
			wantErr: "bad_data (400 Bad Request): parse error: unexpected end of input",
		},
		{
			name:    "not JSON",
			status:  http.StatusBadGateway,
			body:    `<html>bad gateway</html>`,
			wantErr: "502 Bad Gateway",
		},
		{
			name:    "value not a number",
			body:    `{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}`,
			wantErr: "decoding sample value",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotQuery, gotPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotQuery, gotPath = r.URL.Query().Get("query"), r.URL.Path
				w.Header().Set("Content-Type", "application/json")
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				fmt.Fprint(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			// A base URL with a path prefix, as behind a reverse proxy.
			got, err := analysis.Prometheus{Client: srv.Client()}.Query(context.Background(), srv.URL+"/prom/", `sum(up{a="b"})`)
			if gotPath != "/prom/api/v1/query" || gotQuery != `sum(up{a="b"})` {
				t.Errorf("got request %s ?query=%s; want /prom/api/v1/query ?query=sum(up{a=\"b\"})", gotPath, gotQuery)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want error with %q", got, err, tt.wantErr)
				}
				if errors.Is(err, analysis.ErrNotSingleValue) != tt.notOne {
					t.Errorf("got errors.Is(err, ErrNotSingleValue) = %v; want %v", !tt.notOne, tt.notOne)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestPrometheusQueryBadAddress(t *testing.T) {
	_, err := analysis.Prometheus{}.Query(context.Background(), "127.0.0.1:9090", "up")
	if err == nil || !strings.Contains(err.Error(), "not a URL") {
		t.Errorf("got %v; want an error saying the address is not a URL", err)
	}
}

// TestPrometheusReal runs the real Prometheus server scraping three fake
// proxies and checks PromQL metrics against it, with {{wave_nodes}}
// selecting the wave's proxies by their node id (one of which needs its
// regex metacharacter quoted).
func TestPrometheusReal(t *testing.T) {
	good := newFakeProxy(t, "reviews-v1-1")   // 100% success
	canary := newFakeProxy(t, "reviews-v2.1") // 95% success
	other := newFakeProxy(t, "reviews-v2-1")  // matched by "reviews-v2.1" if the dot were not quoted
	good.serve(100, "source", "ratings", "v1", "200", 20)
	canary.serve(95, "source", "ratings", "v1", "200", 20)
	canary.serve(5, "source", "ratings", "v1", "503", 20)
	other.serve(100, "source", "ratings", "v1", "500", 20)

	addr := promtest.Start(t, []string{good.addr(), canary.addr(), other.addr()})
	promtest.WaitForValue(t, addr, `count(count by (instance) (istio_requests_total)) == 3`, 30*time.Second)

	const successRate = `100 * sum(istio_requests_total{reporter="source",source_workload=~"{{wave_nodes}}",response_code!~"5.."})` +
		` / sum(istio_requests_total{reporter="source",source_workload=~"{{wave_nodes}}"})`
	metric := v1alpha1.Metric{Name: "prom-success-rate", Min: ptr(99),
		Prometheus: &v1alpha1.PrometheusQuery{Address: addr, Query: successRate}}
	tests := []struct {
		name        string
		metric      v1alpha1.Metric
		nodes       []string
		wantValue   float64
		wantResult  analysis.Result
		wantMessage string
	}{
		{name: "healthy wave passes", metric: metric, nodes: []string{"reviews-v1-1"}, wantValue: 100, wantResult: analysis.Pass},
		{name: "failing canary fails", metric: metric, nodes: []string{"reviews-v2.1"}, wantValue: 95, wantResult: analysis.Fail,
			wantMessage: "95 is below 99"},
		{name: "two nodes", metric: metric, nodes: []string{"reviews-v1-1", "reviews-v2.1"}, wantValue: 97.5, wantResult: analysis.Fail,
			wantMessage: "97.5 is below 99"},
		{
			name: "no series is inconclusive",
			metric: v1alpha1.Metric{Name: "missing", Max: ptr(1),
				Prometheus: &v1alpha1.PrometheusQuery{Address: addr, Query: `sum(no_such_metric{node=~"{{wave_nodes}}"})`}},
			nodes: []string{"reviews-v1-1"}, wantResult: analysis.Inconclusive,
			wantMessage: "query result is not a single value: empty vector",
		},
		{
			name: "bad PromQL is inconclusive",
			metric: v1alpha1.Metric{Name: "broken", Max: ptr(1),
				Prometheus: &v1alpha1.PrometheusQuery{Address: addr, Query: `sum(rate(`}},
			wantResult: analysis.Inconclusive, wantMessage: "bad_data",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := v1alpha1.Analysis{Metrics: []v1alpha1.Metric{tt.metric}}
			got := analysis.Check(ctx, a, analysis.Input{WaveNodes: tt.nodes}, analysis.Prometheus{})
			if len(got) != 1 {
				t.Fatalf("got %d readings; want 1", len(got))
			}
			r := got[0]
			if r.Value != tt.wantValue || r.Result != tt.wantResult || !strings.Contains(r.Message, tt.wantMessage) {
				t.Errorf("got %v; want value %v, %s, message with %q", r, tt.wantValue, tt.wantResult, tt.wantMessage)
			}
		})
	}
}

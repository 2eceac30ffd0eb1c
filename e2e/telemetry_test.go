package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/otlptest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// telemetryMesh is a controller reading meshConfig, a client sidecar
// (sleep) and a server sidecar (httpbin) in front of an app that answers
// with the trace context it received.
type telemetryMesh struct {
	*mesh
	repo           *e2etest.GitRemote
	sleep, httpbin nodemeta.Workload
}

func startTelemetryMesh(t *testing.T, meshConfig string, files map[string]string) *telemetryMesh {
	t.Helper()
	mcFile := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mcFile, []byte(meshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "traceparent=%s b3=%s", r.Header.Get("Traceparent"), r.Header.Get("B3"))
	}))
	t.Cleanup(app.Close)
	repo := e2etest.NewGitRemote(t)
	files["policy/httpbin.yaml"] = httpbinService
	sha := repo.Push("telemetry", files)
	m := startControllerConfig(t, func() controller.Config {
		cfg := controllerConfig(t, repo.URL, t.TempDir(), 200*time.Millisecond)
		cfg.MeshConfigFile = mcFile
		return cfg
	}())
	tm := &telemetryMesh{mesh: m, repo: repo}
	tm.httpbin = e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "httpbin-1", Service: "httpbin", Namespace: "default", ServiceAccount: "httpbin", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "httpbin"}, Inbound: testnet.FreeAddr(t), App: strings.TrimPrefix(app.URL, "http://"),
	})
	tm.sleep = e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "sleep", Service: "sleep", Namespace: "default", ServiceAccount: "sleep", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "sleep"}, Outbound: testnet.FreeAddr(t),
	})
	tm.waitSynced(t, sha)
	return tm
}

func (tm *telemetryMesh) waitSynced(t *testing.T, sha string) {
	t.Helper()
	e2etest.Eventually(t, 30*time.Second, "revision "+sha+" on both proxies", func() string { return synced(tm.mesh, sha, 2) })
}

// push replaces the policy's files (the httpbin Service stays) and waits
// until both proxies run them.
func (tm *telemetryMesh) push(t *testing.T, msg string, files map[string]string) {
	t.Helper()
	files["policy/httpbin.yaml"] = httpbinService
	tm.waitSynced(t, tm.repo.Push(msg, files))
}

// collectorEntry declares the OTLP receiver at addr as the mesh service
// otel-collector.observability.svc.cluster.local:4317.
func collectorEntry(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel-collector, namespace: observability}
spec:
  hosts: [otel-collector.observability.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{number: 4317, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {grpc: ` + port + `}}]
`
}

func meshTelemetry(spec string) string {
	return "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec: " + spec + "\n"
}

// spanOf returns the span of service and kind whose request carried
// x-request-id id (the server span) or whose parent is parent.
func spanOf(spans []otlptest.Span, service string, kind tracev1.Span_SpanKind, id, parent string) (otlptest.Span, bool) {
	for _, s := range spans {
		if s.Service != service || s.Kind != kind {
			continue
		}
		if id != "" && s.Attributes["guid:x-request-id"] == id || parent != "" && s.ParentSpanID == parent {
			return s, true
		}
	}
	return otlptest.Span{}, false
}

// trace is the four spans of one request client -> sleep -> httpbin -> app.
type trace struct{ sleepServer, sleepClient, httpbinServer, httpbinClient otlptest.Span }

// waitTrace waits for the four spans of the request with x-request-id id.
func waitTrace(t *testing.T, recv *otlptest.Receiver, id string) trace {
	t.Helper()
	var tr trace
	recv.WaitFor(t, 20*time.Second, func(spans []otlptest.Span) error {
		var ok bool
		if tr.sleepServer, ok = spanOf(spans, "sleep.default", tracev1.Span_SPAN_KIND_SERVER, id, ""); !ok {
			return fmt.Errorf("no server span of sleep for %s", id)
		}
		if tr.sleepClient, ok = spanOf(spans, "sleep.default", tracev1.Span_SPAN_KIND_CLIENT, "", tr.sleepServer.SpanID); !ok {
			return fmt.Errorf("no client span of sleep under %s", tr.sleepServer.SpanID)
		}
		if tr.httpbinServer, ok = spanOf(spans, "httpbin.default", tracev1.Span_SPAN_KIND_SERVER, id, ""); !ok {
			return fmt.Errorf("no server span of httpbin for %s", id)
		}
		if tr.httpbinClient, ok = spanOf(spans, "httpbin.default", tracev1.Span_SPAN_KIND_CLIENT, "", tr.httpbinServer.SpanID); !ok {
			return fmt.Errorf("no client span of httpbin under %s", tr.httpbinServer.SpanID)
		}
		return nil
	})
	return tr
}

// TestTracingAcrossSidecars: with a mesh-wide Telemetry sampling every
// request, both sidecars export their spans to an OTLP receiver, and
// httpbin's server span is the child of sleep's client span in one trace;
// an incoming B3 context is continued; at 0% nothing is exported.
func TestTracingAcrossSidecars(t *testing.T) {
	recv := otlptest.Start(t)
	const mc = `extensionProviders:
- name: otel
  opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
`
	collector := collectorEntry(recv.Addr)
	tm := startTelemetryMesh(t, mc, map[string]string{
		"policy/collector.yaml": collector,
		"policy/telemetry.yaml": meshTelemetry("{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}"),
	})

	t.Run("parent and child across two proxies", func(t *testing.T) {
		e2etest.Eventually(t, 20*time.Second, "sleep -> httpbin", func() string {
			if code, body := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/get", map[string]string{"X-Request-Id": "warm-up"}); code != 200 {
				return fmt.Sprintf("status %d: %s", code, body)
			}
			return ""
		})
		code, body := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/get", map[string]string{"X-Request-Id": "trace-1"})
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		tr := waitTrace(t, recv, "trace-1")
		if tr.sleepServer.ParentSpanID != "" {
			t.Errorf("sleep's server span has parent %s; the request carried no context", tr.sleepServer.ParentSpanID)
		}
		if tr.httpbinServer.TraceID != tr.sleepClient.TraceID || tr.httpbinServer.ParentSpanID != tr.sleepClient.SpanID {
			t.Errorf("httpbin's server span is %s/%s (parent %s); want a child of sleep's client span %s/%s",
				tr.httpbinServer.TraceID, tr.httpbinServer.SpanID, tr.httpbinServer.ParentSpanID, tr.sleepClient.TraceID, tr.sleepClient.SpanID)
		}
		if want := "traceparent=00-" + tr.httpbinClient.TraceID + "-" + tr.httpbinClient.SpanID + "-01"; !strings.HasPrefix(body, want) {
			t.Errorf("app saw %q; want %s", body, want)
		}
		if got := tr.sleepClient.Attributes["upstream_cluster"]; got != "outbound|8000||httpbin.default.svc.cluster.local" {
			t.Errorf("sleep's client span upstream_cluster %q", got)
		}
		if got := tr.httpbinServer.Attributes["node_id"]; got != "httpbin-1" {
			t.Errorf("httpbin's server span node_id %q", got)
		}
	})

	t.Run("B3 context continued", func(t *testing.T) {
		const traceID, spanID = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
		code, _ := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/get", map[string]string{
			"X-Request-Id": "trace-b3", "X-B3-TraceId": traceID, "X-B3-SpanId": spanID, "X-B3-Sampled": "1",
		})
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		tr := waitTrace(t, recv, "trace-b3")
		if tr.sleepServer.TraceID != traceID || tr.sleepServer.ParentSpanID != spanID {
			t.Errorf("sleep's server span %s (parent %s); want trace %s, parent %s", tr.sleepServer.TraceID, tr.sleepServer.ParentSpanID, traceID, spanID)
		}
		if tr.httpbinServer.TraceID != traceID {
			t.Errorf("httpbin's server span in trace %s; want %s", tr.httpbinServer.TraceID, traceID)
		}
	})

	t.Run("0% sends none", func(t *testing.T) {
		tm.push(t, "sample nothing", map[string]string{
			"policy/collector.yaml": collector,
			"policy/telemetry.yaml": meshTelemetry("{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 0}]}"),
		})
		for i := range 20 {
			if code, _ := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/get", map[string]string{"X-Request-Id": "unsampled-" + strconv.Itoa(i)}); code != 200 {
				t.Fatalf("status %d", code)
			}
		}
		// A request whose caller decided to sample is still traced
		// (parent-based, as Envoy): once its spans have arrived, the
		// batches holding anything recorded before them have too.
		code, _ := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/get", map[string]string{
			"X-Request-Id": "sampled-by-caller", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		})
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		waitTrace(t, recv, "sampled-by-caller")
		for _, s := range recv.Spans() {
			if strings.HasPrefix(s.Attributes["guid:x-request-id"], "unsampled-") {
				t.Fatalf("span exported at 0%% sampling: %+v", s)
			}
		}
	})
}

// TestAccessLogsSwitchedByTelemetry: a Telemetry naming a text access
// log provider makes both sidecars write Istio's default format; a
// change to a JSON provider switches them to JSON lines with the
// expected fields and the text log stops growing.
func TestAccessLogsSwitchedByTelemetry(t *testing.T) {
	dir := t.TempDir()
	textLog, jsonLog := filepath.Join(dir, "text.log"), filepath.Join(dir, "json.log")
	mc := fmt.Sprintf(`extensionProviders:
- name: text-log
  envoyFileAccessLog: {path: %s}
- name: json-log
  envoyFileAccessLog:
    path: %s
    logFormat:
      labels:
        method: "%%REQ(:METHOD)%%"
        path: "%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%%"
        code: "%%RESPONSE_CODE%%"
        request_id: "%%REQ(X-REQUEST-ID)%%"
        upstream_cluster: "%%UPSTREAM_CLUSTER%%"
        duration: "%%DURATION%%"
`, textLog, jsonLog)
	logs := func(provider string) string {
		return meshTelemetry("{accessLogging: [{providers: [{name: " + provider + "}]}]}")
	}
	tm := startTelemetryMesh(t, mc, map[string]string{"policy/telemetry.yaml": logs("text-log")})
	read := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return nil
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}

	e2etest.Eventually(t, 20*time.Second, "sleep -> httpbin", func() string {
		if code, body := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/status/200?x=1", map[string]string{"X-Request-Id": "text-1"}); code != 200 {
			return fmt.Sprintf("status %d: %s", code, body)
		}
		return ""
	})
	// Istio's default format, from both sides of the exchange.
	outboundLine := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /status/200\?x=1 HTTP/1\.1" 200 - via_upstream - "-" 0 \d+ \d+ - "-" "Go-http-client/1\.1" "text-1" "httpbin:8000" "127\.0\.0\.1:\d+" outbound\|8000\|\|httpbin\.default\.svc\.cluster\.local `)
	inboundLine := regexp.MustCompile(`"text-1" "httpbin:8000" "127\.0\.0\.1:\d+" inbound\|\d+\|\| `)
	e2etest.Eventually(t, 10*time.Second, "text access log lines of text-1", func() string {
		var out, in bool
		for _, l := range read(textLog) {
			out = out || outboundLine.MatchString(l)
			in = in || inboundLine.MatchString(l)
		}
		if !out || !in {
			return fmt.Sprintf("outbound line %v, inbound line %v in:\n%s", out, in, strings.Join(read(textLog), "\n"))
		}
		return ""
	})

	tm.push(t, "JSON access logs", map[string]string{"policy/telemetry.yaml": logs("json-log")})
	before := len(read(textLog))
	if code, _ := call(tm.sleep.Outbound, "httpbin:8000", "GET", "/json", map[string]string{"X-Request-Id": "json-1"}); code != 200 {
		t.Fatalf("status %d", code)
	}
	e2etest.Eventually(t, 10*time.Second, "JSON access log lines of json-1", func() string {
		var clusters []string
		for _, l := range read(jsonLog) {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				return fmt.Sprintf("JSON access log line %q: %v", l, err)
			}
			if m["request_id"] != "json-1" {
				continue
			}
			if m["method"] != "GET" || m["path"] != "/json" || m["code"] != 200.0 {
				return "JSON line " + l
			}
			if _, ok := m["duration"].(float64); !ok {
				return "duration is not a number: " + l
			}
			c, _ := m["upstream_cluster"].(string)
			clusters = append(clusters, strings.SplitN(c, "|", 2)[0])
		}
		sort.Strings(clusters)
		if strings.Join(clusters, ",") != "inbound,outbound" {
			return fmt.Sprintf("JSON lines of json-1 from clusters %q; want one inbound and one outbound", clusters)
		}
		return ""
	})
	if after := len(read(textLog)); after != before {
		t.Errorf("the text log grew from %d to %d lines after the switch to JSON", before, after)
	}
}

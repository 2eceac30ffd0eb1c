package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gitmesh/gitmesh/internal/otlptest"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
)

const collectorCluster = "outbound|4317||otel-collector.observability.svc.cluster.local"

// withTelemetry sets the HCM of l's filter chains' tracing and access logs.
func withTelemetry(t testing.TB, l *listenerv3.Listener, tracing *hcmv3.HttpConnectionManager_Tracing, logs ...*accesslogv3.AccessLog) *listenerv3.Listener {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		f := fc.GetFilters()[0]
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.Tracing, hcm.AccessLog = tracing, logs
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, hcm)}
	}
	return l
}

func otelTracing(t testing.TB, percent float64, tags ...*tracingv3.CustomTag) *hcmv3.HttpConnectionManager_Tracing {
	return &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: percent},
		CustomTags:     tags,
		Provider: &tracev3.Tracing_Http{Name: telemetry.OpenTelemetryTracerName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: anyOf(t, &tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: collectorCluster}}},
			ServiceName: "client.default",
		})}},
	}
}

func fileLog(t testing.TB, path string, format *corev3.SubstitutionFormatString) *accesslogv3.AccessLog {
	fl := &filev3.FileAccessLog{Path: path}
	if format != nil {
		fl.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: format}
	}
	return &accesslogv3.AccessLog{Name: telemetry.FileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, fl)}}
}

// TestTracing: the proxy's spans reach an OTLP receiver; an incoming W3C
// or B3 context is continued; the upstream request carries the client
// span's context in both encodings; the sampling decision is honoured.
func TestTracing(t *testing.T) {
	recv := otlptest.Start(t)
	be := echo(t, "b", nil) // answers with the request's headers as X-Req-<name>
	r := newRig(t, "")
	push := func(percent float64) {
		res := []types.Resource{
			withTelemetry(t, hcmListener(t, "outbound", r.out, "outbound"), otelTracing(t, percent,
				&tracingv3.CustomTag{Tag: "env", Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: "test"}}},
				&tracingv3.CustomTag{Tag: "user", Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: "x-user", DefaultValue: "nobody"}}},
			)),
			routeConfig("outbound", vhost("b", []string{"b"}, toCluster(prefixMatch("/"), "b"))),
			staticCluster(t, "b", "b.default.svc.cluster.local", []string{hostPort(be)}),
			staticCluster(t, collectorCluster, "otel-collector.observability.svc.cluster.local", []string{recv.Addr}),
		}
		r.push(res...)
	}
	push(100)

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		headers map[string]string
		parent  string // the server span's parent; "" for a new trace
	}{
		{"new trace", nil, ""},
		{"traceparent", map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-01"}, spanID},
		{"b3 single header", map[string]string{"b3": traceID + "-" + spanID + "-1"}, spanID},
		{"b3 multi headers", map[string]string{"X-B3-TraceId": traceID, "X-B3-SpanId": spanID, "X-B3-Sampled": "1"}, spanID},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "req-" + strconv.Itoa(i)
			h := map[string]string{"X-Request-Id": id, "X-User": "ann"}
			for k, v := range tt.headers {
				h[k] = v
			}
			resp, _ := r.get("GET", "b", "/x", h)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			seen := upstreamHeaders(resp)
			var server, client otlptest.Span
			recv.WaitFor(t, 10*time.Second, func(spans []otlptest.Span) error {
				server, client = otlptest.Span{}, otlptest.Span{}
				for _, s := range spans {
					if s.Attributes["guid:x-request-id"] == id && s.Kind == tracev1.Span_SPAN_KIND_SERVER {
						server = s
					}
				}
				for _, s := range spans {
					if server.SpanID != "" && s.Kind == tracev1.Span_SPAN_KIND_CLIENT && s.ParentSpanID == server.SpanID {
						client = s
					}
				}
				if client.SpanID == "" {
					return fmt.Errorf("want a server span for %s and a client span under it", id)
				}
				return nil
			})
			switch {
			case server.Kind != tracev1.Span_SPAN_KIND_SERVER:
				t.Errorf("server span kind %v", server.Kind)
			case tt.parent == "" && server.ParentSpanID != "":
				t.Errorf("new trace has parent %s", server.ParentSpanID)
			case tt.parent != "" && (server.TraceID != traceID || server.ParentSpanID != tt.parent):
				t.Errorf("server span %s/%s; want trace %s parent %s", server.TraceID, server.ParentSpanID, traceID, tt.parent)
			case client.TraceID != server.TraceID:
				t.Errorf("client span in trace %s; want %s", client.TraceID, server.TraceID)
			}
			for k, want := range map[string]string{"node_id": r.node, "http.method": "GET", "http.status_code": "200", "upstream_cluster": "b", "env": "test", "user": "ann"} {
				if got := server.Attributes[k]; got != want {
					t.Errorf("server span %s = %q; want %q", k, got, want)
				}
			}
			if server.Service != "client.default" {
				t.Errorf("service.name %q", server.Service)
			}
			wantTP := "00-" + server.TraceID + "-" + client.SpanID + "-01"
			if got := seen.Get("Traceparent"); got != wantTP {
				t.Errorf("upstream traceparent %q; want %q", got, wantTP)
			}
			if got, want := seen.Get("B3"), server.TraceID+"-"+client.SpanID+"-1"; got != want {
				t.Errorf("upstream b3 %q; want %q", got, want)
			}
			if seen.Get("X-B3-Spanid") != client.SpanID || seen.Get("X-B3-Traceid") != server.TraceID {
				t.Errorf("upstream X-B3 headers %v", seen)
			}
		})
	}

	t.Run("not sampled", func(t *testing.T) {
		push(0)
		before := len(recv.Spans())
		resp, _ := r.get("GET", "b", "/y", map[string]string{"X-Request-Id": "unsampled"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if tp := upstreamHeaders(resp).Get("Traceparent"); !strings.HasSuffix(tp, "-00") {
			t.Errorf("upstream traceparent %q; want the not-sampled decision propagated", tp)
		}
		// A sampled parent stays sampled, as in Envoy.
		r.get("GET", "b", "/z", map[string]string{"X-Request-Id": "sampled-parent", "traceparent": "00-" + traceID + "-" + spanID + "-01"})
		recv.WaitFor(t, 10*time.Second, func(spans []otlptest.Span) error {
			for _, s := range spans {
				if s.Attributes["guid:x-request-id"] == "sampled-parent" {
					return nil
				}
			}
			return fmt.Errorf("no span of the sampled parent")
		})
		for _, s := range recv.Spans()[before:] {
			if s.Attributes["guid:x-request-id"] == "unsampled" {
				t.Errorf("a span of an unsampled request was exported: %+v", s)
			}
		}
	})
}

// upstreamHeaders are the request headers echo saw.
func upstreamHeaders(resp *http.Response) http.Header {
	h := http.Header{}
	for k, vs := range resp.Header {
		if name, ok := strings.CutPrefix(k, "X-Req-"); ok {
			h[http.CanonicalHeaderKey(name)] = vs
		}
	}
	return h
}

// TestAccessLog: Envoy's default format, a custom text format and a JSON
// format, written per request, and switched off by a configuration
// without access logs.
func TestAccessLog(t *testing.T) {
	be := backend(t, "b")
	r := newRig(t, "")
	dir := t.TempDir()
	def, text, js := filepath.Join(dir, "default.log"), filepath.Join(dir, "text.log"), filepath.Join(dir, "json.log")
	jsonFormat, err := structpb.NewStruct(map[string]any{
		"method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "code": "%RESPONSE_CODE%",
		"flags": "%RESPONSE_FLAGS%", "bytes_sent": "%BYTES_SENT%", "upstream": "%UPSTREAM_HOST%",
		"missing": "%REQ(X-NOT-THERE)%", "request_id": "%REQ(X-REQUEST-ID)%", "const": 7,
		"nested": map[string]any{"authority": "%REQ(:AUTHORITY)%", "line": "%PROTOCOL% %RESPONSE_CODE%"},
	})
	if err != nil {
		t.Fatal(err)
	}
	routes := []types.Resource{
		routeConfig("outbound", vhost("b", []string{"b"}, toCluster(prefixMatch("/"), "b"))),
		staticCluster(t, "b", "b.default.svc.cluster.local", []string{hostPort(be)}),
	}
	r.push(append([]types.Resource{withTelemetry(t, hcmListener(t, "outbound", r.out, "outbound"), nil,
		fileLog(t, def, nil),
		fileLog(t, text, &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%START_TIME(%Y/%m/%d)% %REQ(:METHOD)% %REQ(USER-AGENT):3% %UPSTREAM_CLUSTER% 100%%\n"}}}}),
		fileLog(t, js, &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: jsonFormat}}),
	)}, routes...)...)

	r.get("GET", "b", "/hello?x=1", map[string]string{"User-Agent": "curl/8", "X-Request-Id": "rid-1", "X-Forwarded-For": "10.1.1.1"})
	r.get("GET", "nowhere", "/missing", map[string]string{"X-Request-Id": "rid-2"})

	lines := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	// [2026-01-02T03:04:05.678Z] "GET /hello?x=1 HTTP/1.1" 200 - 0 1 3 - "10.1.1.1" "curl/8" "rid-1" "b" "127.0.0.1:4567"
	defaultLine := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /hello\?x=1 HTTP/1\.1" 200 - 0 1 \d+ - "10\.1\.1\.1" "curl/8" "rid-1" "b" "` + regexp.QuoteMeta(hostPort(be)) + `"$`)
	got := lines(def)
	if len(got) != 2 || !defaultLine.MatchString(got[0]) {
		t.Fatalf("default format lines:\n%s\nwant the first to match %s", strings.Join(got, "\n"), defaultLine)
	}
	if !regexp.MustCompile(`"GET /missing HTTP/1\.1" 404 NR 0 0 \d+ - "-" "Go-http-client/1\.1" "rid-2" "nowhere" "-"$`).MatchString(got[1]) {
		t.Errorf("no-route line %q", got[1])
	}
	today := time.Now().UTC().Format("2006/01/02")
	if got := lines(text); len(got) != 2 || got[0] != today+" GET cur b 100%" || got[1] != today+" GET Go- - 100%" {
		t.Errorf("text format lines %q", got)
	}
	got = lines(js)
	if len(got) != 2 {
		t.Fatalf("json lines %q", got)
	}
	want := fmt.Sprintf(`{"bytes_sent":1,"code":200,"const":7,"flags":"-","method":"GET","missing":null,"nested":{"authority":"b","line":"HTTP/1.1 200"},"path":"/hello?x=1","request_id":"rid-1","upstream":%q}`, hostPort(be))
	if got[0] != want {
		t.Errorf("json line\n got %s\nwant %s", got[0], want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got[1]), &m); err != nil || m["code"] != 404.0 || m["flags"] != "NR" || m["upstream"] != nil {
		t.Errorf("json no-route line %s (%v)", got[1], err)
	}

	// Switched off: the same listener without access logs.
	r.push(append([]types.Resource{hcmListener(t, "outbound", r.out, "outbound")}, routes...)...)
	r.get("GET", "b", "/after", nil)
	if got := lines(def); len(got) != 2 {
		t.Errorf("a line was written after access logs were switched off: %q", got[len(got)-1])
	}
}

// TestTelemetryNACK: what the proxy cannot do is refused, as Envoy
// refuses what it does not know.
func TestTelemetryNACK(t *testing.T) {
	tests := []struct {
		name    string
		tracing *hcmv3.HttpConnectionManager_Tracing
		log     *corev3.SubstitutionFormatString
		want    string
	}{
		{name: "unknown command operator", log: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%NOPE%\n"}}}}, want: "NOPE"},
		{name: "unterminated operator", log: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%REQ(:PATH)\n"}}}}, want: "unterminated"},
		{name: "zipkin tracer", tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "envoy.tracers.zipkin"}}, want: "envoy.tracers.zipkin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "")
			var logs []*accesslogv3.AccessLog
			if tt.log != nil {
				logs = append(logs, fileLog(t, filepath.Join(t.TempDir(), "a.log"), tt.log))
			}
			l := withTelemetry(t, hcmListener(t, "outbound", r.out, "outbound"), tt.tracing, logs...)
			r.cp.set(t, r.node, snapshot(t, "1", l, routeConfig("outbound")))
			nack := r.cp.waitNACK(t, config.ListenerType)
			if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, tt.want) {
				t.Errorf("NACK %q; want it to name %q", msg, tt.want)
			}
		})
	}
}

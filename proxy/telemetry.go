package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// errNoCluster: a cluster the configuration names does not exist.
var errNoCluster = errors.New("no such cluster")

// hcmTelemetry is an HTTP connection manager's tracing and access logs.
// An httpChain without either has none (nil), and its requests pay
// nothing for it.
type hcmTelemetry struct {
	tracing *tracingConfig // nil: no spans
	logs    []*accessLog
	// reqHeaders are the request headers the access logs read.
	reqHeaders []string
	hostname   string
}

// buildHCMTelemetry validates HttpConnectionManager.tracing and
// access_log; nil when the HCM has neither.
func buildHCMTelemetry(hcm *hcmv3.HttpConnectionManager, refs *clusterRefs) (*hcmTelemetry, *fieldError) {
	if hcm.GetTracing() == nil && len(hcm.GetAccessLog()) == 0 {
		return nil, nil
	}
	tc, fe := buildTracing(hcm.GetTracing(), refs)
	if fe != nil {
		return nil, fe
	}
	t := &hcmTelemetry{tracing: tc}
	for i, al := range hcm.GetAccessLog() {
		l, fe := buildAccessLog(al)
		if fe != nil {
			fe.field = fmt.Sprintf(".access_log[%d]", i) + fe.field
			return nil, fe
		}
		t.logs = append(t.logs, l)
		for _, h := range l.reqHeaders {
			if !containsString(t.reqHeaders, h) {
				t.reqHeaders = append(t.reqHeaders, h)
			}
		}
	}
	t.hostname, _ = os.Hostname()
	return t, nil
}

// reqTelemetry is one request's spans and access log record.
type reqTelemetry struct {
	tel    *hcmTelemetry
	server trace.Span // nil without tracing
	ctx    context.Context
	client trace.Span // the upstream call's; nil outside it
	w      *countingWriter
	body   *countingBody
	rec    logRecord
}

// begin starts a request's telemetry: it makes sure the request has an
// x-request-id (as Envoy's connection manager does), continues or starts
// its trace with a server span, captures what the access logs read of
// the request as the client sent it, and counts the bytes of both
// directions. It returns the writer the handler must use from then on.
func (t *hcmTelemetry) begin(p *Proxy, w http.ResponseWriter, r *http.Request, rs *requestState, start time.Time) http.ResponseWriter {
	rt := &reqTelemetry{tel: t}
	rs.telemetry = rt
	if r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", newRequestID())
	}
	if tc := t.tracing; tc != nil && tc.tracer != nil {
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		attrs := []attribute.KeyValue{
			attribute.String("node_id", p.cfg.Workload.ID),
			attribute.String("guid:x-request-id", r.Header.Get("X-Request-Id")),
			attribute.String("http.url", requestURL(r)),
			attribute.String("http.method", r.Method),
			attribute.String("http.protocol", r.Proto),
			attribute.String("user_agent", orDash(r.UserAgent())),
			attribute.String("downstream_cluster", "-"),
			attribute.String("component", "proxy"),
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			attrs = append(attrs, attribute.String("peer.address", host))
		}
		for _, tag := range tc.tags {
			v := tag.value
			if tag.header != "" {
				if hv := r.Header.Get(tag.header); hv != "" {
					v = hv
				}
			}
			attrs = append(attrs, attribute.String(tag.key, v))
		}
		rt.ctx, rt.server = tc.tracer.Start(ctx, spanName(r), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	}
	if len(t.logs) > 0 {
		rt.rec = logRecord{start: start, r: r, rs: rs, path: r.RequestURI, hostname: t.hostname}
		if rt.rec.path == "" {
			rt.rec.path = r.URL.RequestURI()
		}
		if len(t.reqHeaders) > 0 {
			rt.rec.reqHeaders = make(map[string]string, len(t.reqHeaders))
			for _, h := range t.reqHeaders {
				if v := r.Header.Get(h); v != "" {
					rt.rec.reqHeaders[h] = v
				}
			}
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		rt.body = &countingBody{ReadCloser: r.Body}
		r.Body = rt.body
	}
	rt.w = &countingWriter{ResponseWriter: w}
	return rt.w
}

// startUpstream starts the client span around the upstream exchange and
// writes its context into the request's headers, W3C and B3, for the
// next hop.
func (rt *reqTelemetry) startUpstream(r *http.Request, rs *requestState) {
	if rt.server == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("upstream_cluster", rs.cluster.name),
		attribute.String("upstream_cluster.name", rs.cluster.name),
		attribute.String("http.method", r.Method),
		attribute.String("http.url", requestURL(r)),
	}
	if rs.endpoint != nil {
		attrs = append(attrs, attribute.String("upstream_address", rs.endpoint.addr))
	}
	var ctx context.Context
	ctx, rt.client = rt.tel.tracing.tracer.Start(rt.ctx, "router "+rs.cluster.name+" egress",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if !rt.client.SpanContext().IsValid() {
		return // a tracer that could not start: leave the caller's headers
	}
	for _, h := range []string{"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"} {
		delete(r.Header, h)
	}
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
}

// endUpstream ends the client span with the upstream's answer.
func (rt *reqTelemetry) endUpstream(rs *requestState) {
	if rt.client == nil {
		return
	}
	endSpan(rt.client, rs)
	rt.client = nil
}

// end ends the server span and writes the access log lines.
func (rt *reqTelemetry) end(r *http.Request, rs *requestState) {
	if rt.server != nil {
		if rs.cluster != nil {
			rt.server.SetAttributes(attribute.String("upstream_cluster", rs.cluster.name), attribute.String("upstream_cluster.name", rs.cluster.name))
		}
		rt.server.SetAttributes(attribute.Int64("response_size", rt.w.n), attribute.Int64("request_size", rt.body.count()))
		endSpan(rt.server, rs)
	}
	if len(rt.tel.logs) == 0 {
		return
	}
	rec := &rt.rec
	rec.duration = time.Since(rec.start)
	rec.respHeader = rt.w.Header()
	rec.received, rec.sent = rt.body.count(), rt.w.n
	if rt.server != nil {
		rec.traceID = rt.server.SpanContext().TraceID().String()
	}
	for _, al := range rt.tel.logs {
		if al.sink != nil {
			al.sink.write(al.line(rec))
		}
	}
}

// endSpan records the response code and flags on a span and ends it; a
// 5xx or a reset is an error, as Envoy tags it.
func endSpan(s trace.Span, rs *requestState) {
	s.SetAttributes(attribute.String("http.status_code", strconv.Itoa(rs.code)), attribute.String("response_flags", rs.flags.String()))
	if rs.code >= 500 || rs.code == 0 {
		s.SetAttributes(attribute.Bool("error", true))
		s.SetStatus(codes.Error, rs.flags.String())
	}
	s.End()
}

// spanName is the server span's operation: the authority and path, as
// Envoy names a span whose route has no decorator.
func spanName(r *http.Request) string {
	n := r.Host + r.URL.Path
	if len(n) > 256 {
		n = n[:256]
	}
	return n
}

func requestURL(r *http.Request) string {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	return scheme + r.Host + uri
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// countingWriter counts the response body bytes written downstream.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush flushes the underlying writer.
func (w *countingWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the server's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body bytes read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) count() int64 {
	if b == nil {
		return 0
	}
	return b.n
}

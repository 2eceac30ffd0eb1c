package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gitmesh/gitmesh/proxy/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Outcome is how the proxy handled a request, read when its spans end and
// its access log lines are written. The proxy's request state implements
// it; its values may change until End.
type Outcome interface {
	// ResponseCode is the status sent downstream; 0 when none was.
	ResponseCode() int
	// ResponseFlags are Envoy's response flags.
	ResponseFlags() metrics.ResponseFlags
	// UpstreamCluster is the route's cluster; "" before one is chosen.
	UpstreamCluster() string
	// UpstreamHost is the picked endpoint's address; "" for none.
	UpstreamHost() string
	// RouteName is the matched route's name; "" for none.
	RouteName() string
}

// Request is one request's spans and access log record.
type Request struct {
	tel    *HCM
	server trace.Span // nil without tracing
	ctx    context.Context
	client trace.Span // the upstream call's; nil outside it
	w      *countingWriter
	body   *countingBody
	rec    logRecord
}

// Begin starts a request's telemetry: it makes sure the request has an
// x-request-id (as Envoy's connection manager does), continues or starts
// its trace with a server span, captures what the access logs read of
// the request as the client sent it, and counts the bytes of both
// directions. The handler must use the returned writer from then on, and
// call End when the request is done.
func (t *HCM) Begin(w http.ResponseWriter, r *http.Request, start time.Time) (*Request, http.ResponseWriter) {
	rt := &Request{tel: t}
	if r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", NewRequestID())
	}
	if tc := t.Tracing; tc != nil && tc.tracer != nil {
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		attrs := []attribute.KeyValue{
			attribute.String("node_id", tc.nodeID),
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
		for _, tag := range tc.Tags {
			v := tag.Value
			if tag.Header != "" {
				if hv := r.Header.Get(tag.Header); hv != "" {
					v = hv
				}
			}
			attrs = append(attrs, attribute.String(tag.Key, v))
		}
		rt.ctx, rt.server = tc.tracer.Start(ctx, spanName(r), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	}
	if len(t.Logs) > 0 {
		rt.rec = logRecord{start: start, r: r, path: r.RequestURI, hostname: t.Hostname}
		if rt.rec.path == "" {
			rt.rec.path = r.URL.RequestURI()
		}
		if len(t.ReqHeaders) > 0 {
			rt.rec.reqHeaders = make(map[string]string, len(t.ReqHeaders))
			for _, h := range t.ReqHeaders {
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
	return rt, rt.w
}

// StartUpstream starts the client span around the upstream exchange and
// writes its context into the request's headers, W3C and B3, for the
// next hop. Without tracing it does nothing.
func (rt *Request) StartUpstream(r *http.Request, o Outcome) {
	if rt.server == nil {
		return
	}
	cluster := o.UpstreamCluster()
	attrs := []attribute.KeyValue{
		attribute.String("upstream_cluster", cluster),
		attribute.String("upstream_cluster.name", cluster),
		attribute.String("http.method", r.Method),
		attribute.String("http.url", requestURL(r)),
	}
	if host := o.UpstreamHost(); host != "" {
		attrs = append(attrs, attribute.String("upstream_address", host))
	}
	var ctx context.Context
	ctx, rt.client = rt.tel.Tracing.tracer.Start(rt.ctx, "router "+cluster+" egress",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if !rt.client.SpanContext().IsValid() {
		return // a tracer that could not start: leave the caller's headers
	}
	for _, h := range []string{"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"} {
		delete(r.Header, h)
	}
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
}

// EndUpstream ends the client span with the upstream's answer.
func (rt *Request) EndUpstream(o Outcome) {
	if rt.client == nil {
		return
	}
	endSpan(rt.client, o)
	rt.client = nil
}

// End ends the server span and writes the access log lines.
func (rt *Request) End(o Outcome) {
	if rt.server != nil {
		if c := o.UpstreamCluster(); c != "" {
			rt.server.SetAttributes(attribute.String("upstream_cluster", c), attribute.String("upstream_cluster.name", c))
		}
		rt.server.SetAttributes(attribute.Int64("response_size", rt.w.n), attribute.Int64("request_size", rt.body.count()))
		endSpan(rt.server, o)
	}
	if len(rt.tel.Logs) == 0 {
		return
	}
	rec := &rt.rec
	rec.o = o
	rec.duration = time.Since(rec.start)
	rec.respHeader = rt.w.Header()
	rec.received, rec.sent = rt.body.count(), rt.w.n
	if rt.server != nil {
		rec.traceID = rt.server.SpanContext().TraceID().String()
	}
	for _, al := range rt.tel.Logs {
		if al.sink != nil {
			al.sink.write(al.line(rec))
		}
	}
}

// endSpan records the response code and flags on a span and ends it; a
// 5xx or a reset is an error, as Envoy tags it.
func endSpan(s trace.Span, o Outcome) {
	code, flags := o.ResponseCode(), o.ResponseFlags()
	s.SetAttributes(attribute.String("http.status_code", strconv.Itoa(code)), attribute.String("response_flags", flags.String()))
	if code >= 500 || code == 0 {
		s.SetAttributes(attribute.Bool("error", true))
		s.SetStatus(codes.Error, flags.String())
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

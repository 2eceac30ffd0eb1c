// Package otlptest is an OTLP/gRPC trace receiver for tests: a real
// TraceService server on loopback that keeps every span it is sent.
package otlptest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is a received span, flattened.
type Span struct {
	// TraceID, SpanID and ParentSpanID are lowercase hex; ParentSpanID is
	// "" for a root span.
	TraceID, SpanID, ParentSpanID string
	Name                          string
	Kind                          tracev1.Span_SpanKind
	// Service is the resource's service.name.
	Service string
	// Attributes are the span's attributes, as strings.
	Attributes map[string]string
}

// Receiver is a running OTLP trace receiver.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	// Addr is the host:port it listens on.
	Addr string

	mu    sync.Mutex // guards spans
	spans []Span
}

// Start serves a Receiver on a loopback port until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{Addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r
}

// Export keeps the spans of req.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Name: s.GetName(), Kind: s.GetKind(), Service: service, Attributes: attrs(s.GetAttributes()),
				}
				if len(s.GetParentSpanId()) > 0 {
					sp.ParentSpanID = hex.EncodeToString(s.GetParentSpanId())
				}
				r.spans = append(r.spans, sp)
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func attrs(kvs []*commonv1.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonv1.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonv1.AnyValue_IntValue:
			out[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *commonv1.AnyValue_BoolValue:
			out[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *commonv1.AnyValue_DoubleValue:
			out[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

// Spans returns a copy of the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitFor polls until match holds for the spans received, failing the
// test after timeout with the spans it has.
func (r *Receiver) WaitFor(t testing.TB, timeout time.Duration, match func([]Span) error) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		err := match(spans)
		if err == nil {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v; spans received: %+v", timeout, err, spans)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// spanBatchTimeout is how long finished spans wait to be exported in a
// batch.
const spanBatchTimeout = time.Second

// tracerShutdownTimeout bounds the export of a replaced tracer's last
// spans.
const tracerShutdownTimeout = 5 * time.Second

// propagator reads and writes W3C trace context (traceparent,
// tracestate) and B3 (the single b3 header and the X-B3-* headers); a
// request carrying both is continued from its B3 context. It holds no
// state and is never modified.
var propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{},
	b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
)

// DialFunc connects to an endpoint of the applied configuration's cluster
// name (a collector's).
type DialFunc func(ctx context.Context, cluster string) (net.Conn, error)

// tracerKey identifies a tracer provider: its exporter's cluster and
// service name, and its sampler.
type tracerKey struct {
	cluster, service string
	sampling         float64
}

// tracerEntry is a running tracer provider with its gRPC connection.
type tracerEntry struct {
	tp     *sdktrace.TracerProvider
	conn   *grpc.ClientConn
	tracer trace.Tracer
}

// Sinks are the tracer providers and open access log files of the applied
// configuration, kept across configurations that use them and released
// when one no longer does. One goroutine (the proxy's applier) calls its
// methods.
type Sinks struct {
	nodeID string
	dial   DialFunc
	log    *slog.Logger

	tracers map[tracerKey]*tracerEntry
	logs    map[string]*logSink
	// usedTracers and usedLogs are what the last Attach used.
	usedTracers map[tracerKey]bool
	usedLogs    map[string]bool
	// shutdowns are the replaced tracers still exporting their last
	// spans; Close waits for them.
	shutdowns sync.WaitGroup
}

// NewSinks returns empty Sinks. Spans carry nodeID as node_id; tracers
// reach their collector's cluster with dial; failures to start a tracer or
// open a log file are logged to log.
func NewSinks(nodeID string, dial DialFunc, log *slog.Logger) *Sinks {
	return &Sinks{nodeID: nodeID, dial: dial, log: log, tracers: map[tracerKey]*tracerEntry{}, logs: map[string]*logSink{}}
}

// Attach gives every HCM of a configuration about to be applied its
// tracer and log files, starting or opening those that are not running
// yet. Release, once the configuration is applied, stops the others.
func (s *Sinks) Attach(hcms []*HCM) {
	usedTracers := map[tracerKey]bool{}
	usedLogs := map[string]bool{}
	s.usedTracers, s.usedLogs = usedTracers, usedLogs
	for _, tel := range hcms {
		if tc := tel.Tracing; tc != nil {
			k := tracerKey{cluster: tc.Cluster, service: tc.ServiceName, sampling: tc.Sampling}
			e, ok := s.tracers[k]
			if !ok {
				var err error
				if e, err = s.startTracer(k); err != nil {
					s.log.Error("starting tracer; spans are not exported", "cluster", k.cluster, "error", err)
					e = &tracerEntry{tracer: noop.NewTracerProvider().Tracer("")}
				}
				s.tracers[k] = e
			}
			tc.tracer, tc.nodeID = e.tracer, s.nodeID
			usedTracers[k] = true
		}
		for _, al := range tel.Logs {
			sink, ok := s.logs[al.Path]
			if !ok {
				var err error
				if sink, err = openLogSink(al.Path); err != nil {
					s.log.Error("access log not written", "path", al.Path, "error", err)
					sink = nil
				}
				s.logs[al.Path] = sink
			}
			al.sink = sink
			usedLogs[al.Path] = true
		}
	}
}

// Release stops the tracers and closes the log files the configuration
// last attached does not use.
func (s *Sinks) Release() {
	for k, e := range s.tracers {
		if !s.usedTracers[k] {
			delete(s.tracers, k)
			s.shutdown(e)
		}
	}
	for path, sink := range s.logs {
		if !s.usedLogs[path] {
			delete(s.logs, path)
			if sink != nil {
				sink.close()
			}
		}
	}
}

// startTracer starts a tracer provider whose batch processor exports
// OTLP over gRPC to an endpoint of k.cluster, picked when the connection
// is made.
func (s *Sinks) startTracer(k tracerKey) (*tracerEntry, error) {
	cluster := k.cluster
	conn, err := grpc.NewClient("passthrough:///"+cluster,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.dial(ctx, cluster)
		}))
	if err != nil {
		return nil, fmt.Errorf("connecting to the collector: %w", err)
	}
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithGRPCConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(spanBatchTimeout)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(k.sampling))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", k.service))),
	)
	return &tracerEntry{tp: tp, conn: conn, tracer: tp.Tracer("gitmesh.io/proxy")}, nil
}

// shutdown flushes and stops a tracer provider in the background,
// bounded by tracerShutdownTimeout.
func (s *Sinks) shutdown(e *tracerEntry) {
	if e.tp == nil {
		return
	}
	s.shutdowns.Add(1)
	go func() {
		defer s.shutdowns.Done()
		ctx, cancel := context.WithTimeout(context.Background(), tracerShutdownTimeout)
		defer cancel()
		e.tp.Shutdown(ctx)
		e.conn.Close()
	}()
}

// Close stops every tracer, exporting the spans they hold, and closes the
// log files.
func (s *Sinks) Close() {
	for k, e := range s.tracers {
		delete(s.tracers, k)
		s.shutdown(e)
	}
	for path, sink := range s.logs {
		delete(s.logs, path)
		if sink != nil {
			sink.close()
		}
	}
	s.shutdowns.Wait()
}

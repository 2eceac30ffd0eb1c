package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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

// openTelemetryTracerName is the only tracer the proxy implements.
const openTelemetryTracerName = "envoy.tracers.opentelemetry"

// spanBatchTimeout is how long finished spans wait to be exported in a
// batch.
const spanBatchTimeout = time.Second

// tracerShutdownTimeout bounds the export of a replaced tracer's last
// spans.
const tracerShutdownTimeout = 5 * time.Second

// propagator reads and writes W3C trace context (traceparent,
// tracestate) and B3 (the single b3 header and the X-B3-* headers); a
// request carrying both is continued from its B3 context.
var propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{},
	b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
)

// tracingConfig is an HTTP connection manager's tracing: the
// OpenTelemetry tracer exporting over gRPC to a cluster.
type tracingConfig struct {
	cluster     string
	serviceName string
	// sampling is the fraction of new traces sampled (random_sampling;
	// Envoy's default is all). A request continuing a trace keeps its
	// parent's decision.
	sampling float64
	tags     []spanTag
	// tracer is attached by the applier (see telemetrySinks).
	tracer trace.Tracer
}

// spanTag is a custom tag: a literal (or an environment variable read
// when the configuration was built), or a request header.
type spanTag struct {
	key, value string
	header     string // canonical; "" for a literal
}

// buildTracing validates HttpConnectionManager.tracing; nil when unset.
func buildTracing(t *hcmv3.HttpConnectionManager_Tracing, refs *clusterRefs) (*tracingConfig, *fieldError) {
	if t == nil {
		return nil, nil
	}
	prov := t.GetProvider()
	if prov == nil {
		return nil, fieldErr(".tracing.provider", "missing (the proxy has no bootstrap tracer)")
	}
	if prov.GetName() != openTelemetryTracerName {
		return nil, fieldErr(".tracing.provider.name", "tracer %q: %w", prov.GetName(), errUnsupported)
	}
	otel := &tracev3.OpenTelemetryConfig{}
	if err := prov.GetTypedConfig().UnmarshalTo(otel); err != nil {
		return nil, fieldErr(".tracing.provider.typed_config", "decoding OpenTelemetryConfig: %w", err)
	}
	if otel.GetHttpService() != nil {
		return nil, fieldErr(".tracing.provider.typed_config.http_service", "%w: OTLP over gRPC only", errUnsupported)
	}
	name := otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if name == "" {
		return nil, fieldErr(".tracing.provider.typed_config.grpc_service", "envoy_grpc.cluster_name is required")
	}
	refs.get(name) // warms until the collector's cluster arrives
	tc := &tracingConfig{cluster: name, serviceName: otel.GetServiceName(), sampling: 1}
	if tc.serviceName == "" {
		tc.serviceName = "unknown_service:gitmesh-proxy"
	}
	if rs := t.GetRandomSampling(); rs != nil {
		tc.sampling = min(max(rs.GetValue(), 0), 100) / 100
	}
	for i, ct := range t.GetCustomTags() {
		tag := spanTag{key: ct.GetTag()}
		switch {
		case ct.GetLiteral() != nil:
			tag.value = ct.GetLiteral().GetValue()
		case ct.GetEnvironment() != nil:
			tag.value = os.Getenv(ct.GetEnvironment().GetName())
			if tag.value == "" {
				tag.value = ct.GetEnvironment().GetDefaultValue()
			}
		case ct.GetRequestHeader() != nil:
			tag.header = canonicalLogHeader(ct.GetRequestHeader().GetName())
			tag.value = ct.GetRequestHeader().GetDefaultValue()
		default:
			return nil, fieldErr(fmt.Sprintf(".tracing.custom_tags[%d]", i), "only literal, environment and request_header tags: %w", errUnsupported)
		}
		tc.tags = append(tc.tags, tag)
	}
	return tc, nil
}

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

// telemetrySinks are the tracer providers and open access log files of
// the applied configuration, kept across configurations that use them
// and released when one no longer does. Only the applier uses it.
type telemetrySinks struct {
	p       *Proxy
	tracers map[tracerKey]*tracerEntry
	logs    map[string]*logSink
	// usedTracers and usedLogs are what the last attach used.
	usedTracers map[tracerKey]bool
	usedLogs    map[string]bool
	// shutdowns are the replaced tracers still exporting their last
	// spans; close waits for them.
	shutdowns sync.WaitGroup
}

func newTelemetrySinks(p *Proxy) *telemetrySinks {
	return &telemetrySinks{p: p, tracers: map[tracerKey]*tracerEntry{}, logs: map[string]*logSink{}}
}

// attach gives every HTTP connection manager of cfg with tracing or
// access logs its tracer and log files, starting or opening those that
// are not running yet. release, once cfg is applied, stops the others.
func (s *telemetrySinks) attach(cfg *meshConfig) {
	usedTracers := map[tracerKey]bool{}
	usedLogs := map[string]bool{}
	s.usedTracers, s.usedLogs = usedTracers, usedLogs
	for _, lc := range cfg.listeners {
		chains := lc.chains
		if lc.defaultChain != nil {
			chains = append(chains[:len(chains):len(chains)], lc.defaultChain)
		}
		for _, fc := range chains {
			if fc.http == nil || fc.http.telemetry == nil {
				continue
			}
			tel := fc.http.telemetry
			if tc := tel.tracing; tc != nil {
				k := tracerKey{cluster: tc.cluster, service: tc.serviceName, sampling: tc.sampling}
				e, ok := s.tracers[k]
				if !ok {
					var err error
					if e, err = s.startTracer(k); err != nil {
						s.p.log.Error("starting tracer; spans are not exported", "cluster", k.cluster, "error", err)
						e = &tracerEntry{tracer: noop.NewTracerProvider().Tracer("")}
					}
					s.tracers[k] = e
				}
				tc.tracer = e.tracer
				usedTracers[k] = true
			}
			for _, al := range tel.logs {
				sink, ok := s.logs[al.path]
				if !ok {
					var err error
					if sink, err = openLogSink(al.path); err != nil {
						s.p.log.Error("access log not written", "path", al.path, "error", err)
						sink = nil
					}
					s.logs[al.path] = sink
				}
				al.sink = sink
				usedLogs[al.path] = true
			}
		}
	}
}

// release stops the tracers and closes the log files the configuration
// last attached does not use.
func (s *telemetrySinks) release() {
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
func (s *telemetrySinks) startTracer(k tracerKey) (*tracerEntry, error) {
	cluster := k.cluster
	conn, err := grpc.NewClient("passthrough:///"+cluster,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.p.dialCluster(ctx, cluster)
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
func (s *telemetrySinks) shutdown(e *tracerEntry) {
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

// close stops every tracer (exporting what they hold) and closes the log
// files.
func (s *telemetrySinks) close() {
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

// dialCluster connects to an endpoint of the applied configuration's
// cluster name (a collector's).
func (p *Proxy) dialCluster(ctx context.Context, name string) (net.Conn, error) {
	cfg := p.current.Load()
	if cfg == nil {
		return nil, fmt.Errorf("dialing cluster %s: no configuration applied", name)
	}
	c := cfg.clusters[name]
	if c == nil || c.missing {
		return nil, fmt.Errorf("dialing cluster %s: %w", name, errNoCluster)
	}
	e := c.pick(&pickRequest{})
	if e == nil {
		return nil, fmt.Errorf("dialing cluster %s: %w", name, errNoHealthyUpstream)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.addr)
}

package config

import (
	"fmt"
	"os"
	"slices"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"google.golang.org/protobuf/types/known/structpb"
)

// envoyDefaultLogFormat is Envoy's default access log format, used by a
// logger that names none.
const envoyDefaultLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// hostname is the machine's host name (%HOSTNAME%), read once rather than
// for each connection manager of each update.
var hostname = sync.OnceValue(func() string {
	h, _ := os.Hostname()
	return h
})

// buildHCMTelemetry validates HttpConnectionManager.tracing and
// access_log; nil when the HCM has neither.
func buildHCMTelemetry(hcm *hcmv3.HttpConnectionManager, refs *clusterRefs) (*telemetry.HCM, *fieldError) {
	if hcm.GetTracing() == nil && len(hcm.GetAccessLog()) == 0 {
		return nil, nil
	}
	tc, fe := buildTracing(hcm.GetTracing(), refs)
	if fe != nil {
		return nil, fe
	}
	t := &telemetry.HCM{Tracing: tc}
	for i, al := range hcm.GetAccessLog() {
		l, fe := buildAccessLog(al)
		if fe != nil {
			fe.Field = fmt.Sprintf(".access_log[%d]", i) + fe.Field
			return nil, fe
		}
		t.Logs = append(t.Logs, l)
		for _, h := range l.ReqHeaders {
			if !slices.Contains(t.ReqHeaders, h) {
				t.ReqHeaders = append(t.ReqHeaders, h)
			}
		}
	}
	t.Hostname = hostname()
	return t, nil
}

// buildTracing validates HttpConnectionManager.tracing; nil when unset.
func buildTracing(t *hcmv3.HttpConnectionManager_Tracing, refs *clusterRefs) (*telemetry.Tracing, *fieldError) {
	if t == nil {
		return nil, nil
	}
	prov := t.GetProvider()
	if prov == nil {
		return nil, fieldErr(".tracing.provider", "missing (the proxy has no bootstrap tracer)")
	}
	if prov.GetName() != telemetry.OpenTelemetryTracerName {
		return nil, fieldErr(".tracing.provider.name", "tracer %q: %w", prov.GetName(), ErrUnsupported)
	}
	otel := &tracev3.OpenTelemetryConfig{}
	if err := prov.GetTypedConfig().UnmarshalTo(otel); err != nil {
		return nil, fieldErr(".tracing.provider.typed_config", "decoding OpenTelemetryConfig: %w", err)
	}
	if otel.GetHttpService() != nil {
		return nil, fieldErr(".tracing.provider.typed_config.http_service", "%w: OTLP over gRPC only", ErrUnsupported)
	}
	name := otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if name == "" {
		return nil, fieldErr(".tracing.provider.typed_config.grpc_service", "envoy_grpc.cluster_name is required")
	}
	refs.get(name) // warms until the collector's cluster arrives
	tc := &telemetry.Tracing{Cluster: name, ServiceName: otel.GetServiceName(), Sampling: 1}
	if tc.ServiceName == "" {
		tc.ServiceName = "unknown_service:gitmesh-proxy"
	}
	if rs := t.GetRandomSampling(); rs != nil {
		tc.Sampling = min(max(rs.GetValue(), 0), 100) / 100
	}
	for i, ct := range t.GetCustomTags() {
		tag := telemetry.Tag{Key: ct.GetTag()}
		switch {
		case ct.GetLiteral() != nil:
			tag.Value = ct.GetLiteral().GetValue()
		case ct.GetEnvironment() != nil:
			tag.Value = os.Getenv(ct.GetEnvironment().GetName())
			if tag.Value == "" {
				tag.Value = ct.GetEnvironment().GetDefaultValue()
			}
		case ct.GetRequestHeader() != nil:
			tag.Header = canonicalLogHeader(ct.GetRequestHeader().GetName())
			tag.Value = ct.GetRequestHeader().GetDefaultValue()
		default:
			return nil, fieldErr(fmt.Sprintf(".tracing.custom_tags[%d]", i), "only literal, environment and request_header tags: %w", ErrUnsupported)
		}
		tc.Tags = append(tc.Tags, tag)
	}
	return tc, nil
}

// buildAccessLog validates an access_log entry (file, stdout or stderr
// logger without a filter) and compiles its format.
func buildAccessLog(al *accesslogv3.AccessLog) (*telemetry.AccessLog, *fieldError) {
	if al.GetFilter() != nil {
		return nil, fieldErr(".filter", "access log filters: %w", ErrUnsupported)
	}
	tc := al.GetTypedConfig()
	if tc == nil {
		return nil, fieldErr(".typed_config", "missing")
	}
	var format *corev3.SubstitutionFormatString
	out := &telemetry.AccessLog{}
	switch al.GetName() {
	case telemetry.FileAccessLogName:
		fl := &filev3.FileAccessLog{}
		if err := tc.UnmarshalTo(fl); err != nil {
			return nil, fieldErr(".typed_config", "decoding FileAccessLog: %w", err)
		}
		if fl.GetPath() == "" {
			return nil, fieldErr(".typed_config.path", "empty")
		}
		out.Path = fl.GetPath()
		switch f := fl.GetAccessLogFormat().(type) {
		case nil:
		case *filev3.FileAccessLog_LogFormat:
			format = f.LogFormat
		case *filev3.FileAccessLog_Format:
			format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: f.Format}}
		case *filev3.FileAccessLog_JsonFormat:
			format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: f.JsonFormat}}
		default:
			return nil, fieldErr(".typed_config", "access log format %T: %w", f, ErrUnsupported)
		}
	case telemetry.StdoutAccessLogName:
		out.Path = "/dev/stdout"
		sl := &streamv3.StdoutAccessLog{}
		if err := tc.UnmarshalTo(sl); err != nil {
			return nil, fieldErr(".typed_config", "decoding StdoutAccessLog: %w", err)
		}
		format = sl.GetLogFormat()
	case telemetry.StderrAccessLogName:
		out.Path = "/dev/stderr"
		se := &streamv3.StderrAccessLog{}
		if err := tc.UnmarshalTo(se); err != nil {
			return nil, fieldErr(".typed_config", "decoding StderrAccessLog: %w", err)
		}
		format = se.GetLogFormat()
	default:
		return nil, fieldErr(".name", "access logger %q: %w", al.GetName(), ErrUnsupported)
	}
	if fe := compileFormat(out, format); fe != nil {
		fe.Field = ".typed_config" + fe.Field
		return nil, fe
	}
	return out, nil
}

// compileFormat parses a SubstitutionFormatString (Envoy's default text
// format when nil) into a.
func compileFormat(a *telemetry.AccessLog, f *corev3.SubstitutionFormatString) *fieldError {
	text := envoyDefaultLogFormat
	if f != nil {
		a.OmitEmpty = f.GetOmitEmptyValues()
		if len(f.GetFormatters()) > 0 {
			return fieldErr(".log_format.formatters", "%w", ErrUnsupported)
		}
		switch x := f.GetFormat().(type) {
		case *corev3.SubstitutionFormatString_TextFormat:
			text = x.TextFormat
		case *corev3.SubstitutionFormatString_TextFormatSource:
			s, ok := x.TextFormatSource.GetSpecifier().(*corev3.DataSource_InlineString)
			if !ok {
				return fieldErr(".log_format.text_format_source", "only inline_string: %w", ErrUnsupported)
			}
			text = s.InlineString
		case *corev3.SubstitutionFormatString_JsonFormat:
			n, err := compileJSON(structpb.NewStructValue(x.JsonFormat))
			if err != nil {
				return fieldErr(".log_format.json_format", "%w", err)
			}
			a.JSON = n
			a.ReqHeaders = jsonHeaders(n, nil)
			return nil
		}
	}
	parts, err := parseLogFormat(text)
	if err != nil {
		return fieldErr(".log_format", "%w", err)
	}
	a.Text = parts
	for _, op := range parts {
		a.ReqHeaders = opHeaders(op, a.ReqHeaders)
	}
	return nil
}

// Telemetry returns the tracing and access logs of every HTTP connection
// manager of cfg, for the applier to attach their tracers and log files
// before cfg is swapped in.
func (cfg *MeshConfig) Telemetry() []*telemetry.HCM {
	var out []*telemetry.HCM
	for _, lc := range cfg.Listeners {
		for _, fc := range append(lc.Chains[:len(lc.Chains):len(lc.Chains)], lc.defaultChain) {
			if fc != nil && fc.HTTP != nil && fc.HTTP.Telemetry != nil {
				out = append(out, fc.HTTP.Telemetry)
			}
		}
	}
	return out
}

package compiler

import (
	"bytes"
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// Envoy extension names the telemetry output uses.
const (
	openTelemetryTracer = "envoy.tracers.opentelemetry"
	fileAccessLogger    = "envoy.access_loggers.file"
)

// stdoutPath is the file Istio's built-in "envoy" provider writes
// (meshConfig.accessLogFile's usual value).
const stdoutPath = "/dev/stdout"

// IstioTextLogFormat is Istio's default access log format
// (EnvoyTextLogFormat), used by the "envoy" provider and by
// envoyFileAccessLog providers without a logFormat.
const IstioTextLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% ` +
	`%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% ` +
	`%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% ` +
	`%REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// istioJSONLogFormat is Istio's default JSON access log
// (accessLogEncoding JSON without a format).
var istioJSONLogFormat = map[string]string{
	"start_time":                        "%START_TIME%",
	"method":                            "%REQ(:METHOD)%",
	"path":                              "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"protocol":                          "%PROTOCOL%",
	"response_code":                     "%RESPONSE_CODE%",
	"response_flags":                    "%RESPONSE_FLAGS%",
	"response_code_details":             "%RESPONSE_CODE_DETAILS%",
	"connection_termination_details":    "%CONNECTION_TERMINATION_DETAILS%",
	"upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	"bytes_received":                    "%BYTES_RECEIVED%",
	"bytes_sent":                        "%BYTES_SENT%",
	"duration":                          "%DURATION%",
	"upstream_service_time":             "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	"x_forwarded_for":                   "%REQ(X-FORWARDED-FOR)%",
	"user_agent":                        "%REQ(USER-AGENT)%",
	"request_id":                        "%REQ(X-REQUEST-ID)%",
	"authority":                         "%REQ(:AUTHORITY)%",
	"upstream_host":                     "%UPSTREAM_HOST%",
	"upstream_cluster":                  "%UPSTREAM_CLUSTER_RAW%",
	"upstream_local_address":            "%UPSTREAM_LOCAL_ADDRESS%",
	"downstream_local_address":          "%DOWNSTREAM_LOCAL_ADDRESS%",
	"downstream_remote_address":         "%DOWNSTREAM_REMOTE_ADDRESS%",
	"requested_server_name":             "%REQUESTED_SERVER_NAME%",
	"route_name":                        "%ROUTE_NAME%",
}

// applyTelemetry sets the HTTP connection managers of res's listeners'
// tracing and access_log from the Telemetry objects that apply to the
// class: inbound listeners take the SERVER side, the others the CLIENT
// side. Listeners without an HTTP connection manager are unchanged.
func (b *builder) applyTelemetry(res *resources) error {
	ts := &b.p.telemetry
	if ts.root == nil && len(ts.namespaces) == 0 && len(ts.workloads) == 0 && ts.mesh == nil {
		return nil
	}
	type settings struct {
		tracing *hcmv3.HttpConnectionManager_Tracing
		logs    []*accesslogv3.AccessLog
	}
	byMode := map[telemetryMode]*settings{}
	for _, l := range res.listeners {
		mode := modeClient
		if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
			mode = modeServer
		}
		s := byMode[mode]
		if s == nil {
			tr, logs := ts.telemetryFor(b.namespace, b.class.Labels, mode)
			s = &settings{}
			var err error
			if s.tracing, err = b.hcmTracing(tr); err != nil {
				return err
			}
			if s.logs, err = b.hcmAccessLogs(logs); err != nil {
				return err
			}
			byMode[mode] = s
		}
		if s.tracing == nil && len(s.logs) == 0 {
			continue
		}
		if err := setHCMTelemetry(l, s.tracing, s.logs); err != nil {
			return fmt.Errorf("applying telemetry to listener %s: %w", l.GetName(), err)
		}
	}
	return nil
}

// setHCMTelemetry rewrites every HTTP connection manager of l with tracing
// and access logs.
func setHCMTelemetry(l *listenerv3.Listener, tracing *hcmv3.HttpConnectionManager_Tracing, logs []*accesslogv3.AccessLog) error {
	for _, fc := range listenerChains(l) {
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager || f.GetTypedConfig() == nil {
				continue
			}
			err := editHCM(f, func(hcm *hcmv3.HttpConnectionManager) {
				hcm.Tracing, hcm.AccessLog = tracing, logs
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// hcmTracing is Envoy's HCM tracing for tr: random sampling, custom tags
// and the OpenTelemetry tracer exporting over gRPC to the collector's
// cluster, named as Istio names a workload's spans' service
// (<service>.<namespace>). nil when tr is.
func (b *builder) hcmTracing(tr *tracingSettings) (*hcmv3.HttpConnectionManager_Tracing, error) {
	if tr == nil {
		return nil, nil
	}
	service := b.class.Service
	if service == "" {
		service = b.class.Labels["app"]
	}
	if service == "" {
		service = "unknown"
	}
	cfg, err := marshalAny(&tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: tr.cluster},
		}},
		ServiceName: service + "." + b.namespace,
	})
	if err != nil {
		return nil, err
	}
	out := &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling:    &typev3.Percent{Value: tr.sampling},
		SpawnUpstreamSpan: wrapperspb.Bool(true),
		Provider:          &tracev3.Tracing_Http{Name: openTelemetryTracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: cfg}},
	}
	for _, k := range sortedKeys(tr.tags) {
		ct := tr.tags[k]
		tag := &tracingv3.CustomTag{Tag: k}
		switch {
		case ct.GetLiteral() != nil:
			tag.Type = &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: ct.GetLiteral().GetValue()}}
		case ct.GetHeader() != nil:
			tag.Type = &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{
				Name: ct.GetHeader().GetName(), DefaultValue: ct.GetHeader().GetDefaultValue()}}
		case ct.GetEnvironment() != nil:
			tag.Type = &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{
				Name: ct.GetEnvironment().GetName(), DefaultValue: ct.GetEnvironment().GetDefaultValue()}}
		default:
			continue
		}
		out.CustomTags = append(out.CustomTags, tag)
	}
	return out, nil
}

// hcmAccessLogs are Envoy file access logs for the enabled providers:
// "envoy" writes the mesh's accessLogFile (or /dev/stdout) in
// accessLogFormat or Istio's default format (JSON with accessLogEncoding
// JSON); an envoyFileAccessLog provider writes its path in its text
// format, its labels as JSON, or Istio's default text format.
func (b *builder) hcmAccessLogs(names accessLogSettings) ([]*accesslogv3.AccessLog, error) {
	ts := &b.p.telemetry
	var out []*accesslogv3.AccessLog
	for _, n := range names {
		fl := &filev3.FileAccessLog{}
		var format *corev3.SubstitutionFormatString
		var err error
		if n == envoyProviderName {
			mc := ts.mesh
			fl.Path = mc.GetAccessLogFile()
			if fl.Path == "" {
				fl.Path = stdoutPath
			}
			switch {
			case mc.GetAccessLogEncoding() == meshconfig.MeshConfig_JSON:
				format, err = jsonFormat(mc.GetAccessLogFormat())
			default:
				format = textFormat(mc.GetAccessLogFormat())
			}
		} else {
			p := ts.providers[n].GetEnvoyFileAccessLog()
			fl.Path = p.GetPath()
			if labels := p.GetLogFormat().GetLabels(); labels != nil {
				format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: labels}}
			} else {
				format = textFormat(p.GetLogFormat().GetText())
			}
			format.OmitEmptyValues = p.GetOmitEmptyValues()
		}
		if err != nil {
			return nil, fmt.Errorf("access log provider %s: %w", n, err)
		}
		fl.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: format}
		a, err := marshalAny(fl)
		if err != nil {
			return nil, err
		}
		out = append(out, &accesslogv3.AccessLog{Name: fileAccessLogger, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}})
	}
	return out, nil
}

// textFormat is a text format string, Istio's default when empty; a
// line without a trailing newline gets one, as Istio adds it.
func textFormat(s string) *corev3.SubstitutionFormatString {
	if s == "" {
		s = IstioTextLogFormat
	}
	if s[len(s)-1] != '\n' {
		s += "\n"
	}
	return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
		TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}},
	}}
}

// jsonFormat is meshConfig.accessLogFormat read as a JSON object of
// command operators, Istio's default JSON format when empty.
func jsonFormat(s string) (*corev3.SubstitutionFormatString, error) {
	st := &structpb.Struct{}
	if s == "" {
		fields := map[string]any{}
		for k, v := range istioJSONLogFormat {
			fields[k] = v
		}
		var err error
		if st, err = structpb.NewStruct(fields); err != nil {
			return nil, err
		}
	} else if err := st.UnmarshalJSON([]byte(s)); err != nil {
		return nil, fmt.Errorf("accessLogFormat with accessLogEncoding JSON must be a JSON object: %w", err)
	}
	return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: st}}, nil
}

// tracingCluster is the collector cluster an HTTP connection manager
// filter's OpenTelemetry tracer exports to; "" for none.
func tracingCluster(f *listenerv3.Filter) string {
	if f.GetName() != wellknown.HTTPConnectionManager || !bytes.Contains(f.GetTypedConfig().GetValue(), []byte(openTelemetryTracer)) {
		return ""
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
		return ""
	}
	otel := &tracev3.OpenTelemetryConfig{}
	if hcm.GetTracing().GetProvider().GetTypedConfig().UnmarshalTo(otel) != nil {
		return ""
	}
	return otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
}

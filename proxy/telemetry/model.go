// Package telemetry carries out an HTTP connection manager's tracing and
// access logs at request time: OpenTelemetry spans continued from and
// propagated as W3C trace context and B3, exported over OTLP/gRPC, and
// access log lines in Envoy's text and JSON formats. proxy/config builds
// its model (HCM) from the HttpConnectionManager's tracing and access_log;
// Sinks gives a built configuration its running tracer providers and open
// log files, kept across configurations that use them.
package telemetry

import "go.opentelemetry.io/otel/trace"

// Tracer and access logger names, as Envoy registers them.
const (
	// OpenTelemetryTracerName is the only tracer the proxy implements.
	OpenTelemetryTracerName = "envoy.tracers.opentelemetry"
	// FileAccessLogName writes to a file (access_log[].name).
	FileAccessLogName = "envoy.access_loggers.file"
	// StdoutAccessLogName writes to the proxy's standard output.
	StdoutAccessLogName = "envoy.access_loggers.stdout"
	// StderrAccessLogName writes to the proxy's standard error.
	StderrAccessLogName = "envoy.access_loggers.stderr"
)

// HCM is an HTTP connection manager's tracing and access logs. A chain
// without either has none (nil), and its requests pay nothing for it.
type HCM struct {
	// Tracing is the chain's tracer; nil for no spans.
	Tracing *Tracing
	// Logs are the access loggers, in order.
	Logs []*AccessLog
	// ReqHeaders are the canonical names of the request headers the access
	// logs read, captured as the client sent them.
	ReqHeaders []string
	// Hostname is %HOSTNAME%.
	Hostname string
}

// Tracing is an HTTP connection manager's tracing: the OpenTelemetry
// tracer exporting OTLP over gRPC to a cluster.
type Tracing struct {
	// Cluster is the collector's cluster (grpc_service.envoy_grpc).
	Cluster string
	// ServiceName is the spans' service.name resource attribute.
	ServiceName string
	// Sampling is the fraction (0 to 1) of new traces sampled
	// (random_sampling; Envoy's default is all). A request continuing a
	// trace keeps its parent's decision.
	Sampling float64
	// Tags are the custom tags set on server spans.
	Tags []Tag

	// tracer and nodeID are attached by Sinks.Attach.
	tracer trace.Tracer
	nodeID string
}

// Tag is a custom span tag: a literal (or an environment variable read
// when the configuration was built), or a request header.
type Tag struct {
	Key string
	// Value is the literal, or the header's default value.
	Value string
	// Header is the canonical request header name; "" for a literal.
	Header string
}

// AccessLog is one access logger: where it writes and its format, either
// Text or JSON.
type AccessLog struct {
	// Path is a file, "/dev/stdout" or "/dev/stderr".
	Path string
	// Text is a text format's literals and operators.
	Text []Op
	// JSON is a json_format; nil for a text format.
	JSON *JSONNode
	// OmitEmpty leaves out JSON fields without a value
	// (omit_empty_values).
	OmitEmpty bool
	// ReqHeaders are the canonical names of the request headers the format
	// reads.
	ReqHeaders []string

	// sink is attached by Sinks.Attach; nil when the file could not be
	// opened.
	sink *logSink
}

// OpKind is a command operator of a format (%NAME%).
type OpKind int

// Command operators. OpEmpty stands for operators the proxy knows but has
// no value for ("-").
const (
	OpLiteral OpKind = iota
	OpStartTime
	OpReq
	OpResp
	OpProtocol
	OpResponseCode
	OpResponseFlags
	OpResponseCodeDetails
	OpBytesReceived
	OpBytesSent
	OpDuration
	OpUpstreamHost
	OpUpstreamCluster
	OpDownstreamRemote
	OpDownstreamRemoteNoPort
	OpDownstreamLocal
	OpRequestedServerName
	OpRouteName
	OpHostname
	OpTraceID
	OpEmpty
)

// Op is a parsed piece of a format: a literal, or a command operator.
// REQ(X?Y):N has header X, fallback Y and max length N.
type Op struct {
	Kind OpKind
	// Literal is the text of an OpLiteral.
	Literal string
	// Arg and Alt are REQ's and RESP's canonical header names
	// (pseudo-headers lowercase, ":path").
	Arg, Alt string
	// MaxLen truncates the value; 0: unlimited.
	MaxLen int
	// StartTime is START_TIME's format.
	StartTime TimeFormat
}

// JSONNode is a compiled json_format value: an object of nodes, or a
// string of parts (typed when it is one operator alone), or a constant.
type JSONNode struct {
	// Fields are an object's members, sorted by key.
	Fields []JSONField
	// Parts are a string value's literals and operators.
	Parts []Op
	// Value is a constant (number, bool, null).
	Value any
	// IsObj is true for an object.
	IsObj bool
}

// JSONField is one member of a json_format object.
type JSONField struct {
	Key  string
	Node *JSONNode
}

// TimeFormat is START_TIME's format: Envoy's default
// (2006-01-02T15:04:05.000Z, UTC) or a Go layout translated from a
// strftime subset.
type TimeFormat struct {
	// Layout is a Go time layout; "" for Envoy's default.
	Layout string
	// Epoch is true for %s alone (seconds since the epoch).
	Epoch bool
}

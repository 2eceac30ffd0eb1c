package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Access logger names (HttpConnectionManager access_log[].name).
const (
	fileAccessLogName   = "envoy.access_loggers.file"
	stdoutAccessLogName = "envoy.access_loggers.stdout"
	stderrAccessLogName = "envoy.access_loggers.stderr"
)

// envoyDefaultLogFormat is Envoy's default access log format, used by a
// logger that names none.
const envoyDefaultLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// accessLog is one built access logger: where it writes and its format.
// sink is attached by the applier (see telemetrySinks).
type accessLog struct {
	path string // a file, "/dev/stdout" or "/dev/stderr"
	text []logPart
	// json is the json_format; nil for a text format.
	json       *jsonNode
	omitEmpty  bool
	sink       *logSink
	reqHeaders []string // canonical names of the request headers the format reads
}

// buildAccessLog validates an access_log entry (file, stdout or stderr
// logger without a filter) and compiles its format.
func buildAccessLog(al *accesslogv3.AccessLog) (*accessLog, *fieldError) {
	if al.GetFilter() != nil {
		return nil, fieldErr(".filter", "access log filters: %w", errUnsupported)
	}
	tc := al.GetTypedConfig()
	if tc == nil {
		return nil, fieldErr(".typed_config", "missing")
	}
	var format *corev3.SubstitutionFormatString
	out := &accessLog{}
	switch al.GetName() {
	case fileAccessLogName:
		fl := &filev3.FileAccessLog{}
		if err := tc.UnmarshalTo(fl); err != nil {
			return nil, fieldErr(".typed_config", "decoding FileAccessLog: %w", err)
		}
		if fl.GetPath() == "" {
			return nil, fieldErr(".typed_config.path", "empty")
		}
		out.path = fl.GetPath()
		switch f := fl.GetAccessLogFormat().(type) {
		case nil:
		case *filev3.FileAccessLog_LogFormat:
			format = f.LogFormat
		case *filev3.FileAccessLog_Format:
			format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: f.Format}}
		case *filev3.FileAccessLog_JsonFormat:
			format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: f.JsonFormat}}
		default:
			return nil, fieldErr(".typed_config", "access log format %T: %w", f, errUnsupported)
		}
	case stdoutAccessLogName, stderrAccessLogName:
		out.path = "/dev/stdout"
		if al.GetName() == stderrAccessLogName {
			out.path = "/dev/stderr"
		}
		sl := &streamv3.StdoutAccessLog{}
		if al.GetName() == stderrAccessLogName {
			se := &streamv3.StderrAccessLog{}
			if err := tc.UnmarshalTo(se); err != nil {
				return nil, fieldErr(".typed_config", "decoding StderrAccessLog: %w", err)
			}
			format = se.GetLogFormat()
		} else {
			if err := tc.UnmarshalTo(sl); err != nil {
				return nil, fieldErr(".typed_config", "decoding StdoutAccessLog: %w", err)
			}
			format = sl.GetLogFormat()
		}
	default:
		return nil, fieldErr(".name", "access logger %q: %w", al.GetName(), errUnsupported)
	}
	if fe := out.compileFormat(format); fe != nil {
		fe.field = ".typed_config" + fe.field
		return nil, fe
	}
	return out, nil
}

// compileFormat parses a SubstitutionFormatString (Envoy's default text
// format when nil).
func (a *accessLog) compileFormat(f *corev3.SubstitutionFormatString) *fieldError {
	text := envoyDefaultLogFormat
	if f != nil {
		a.omitEmpty = f.GetOmitEmptyValues()
		if len(f.GetFormatters()) > 0 {
			return fieldErr(".log_format.formatters", "%w", errUnsupported)
		}
		switch x := f.GetFormat().(type) {
		case *corev3.SubstitutionFormatString_TextFormat:
			text = x.TextFormat
		case *corev3.SubstitutionFormatString_TextFormatSource:
			s, ok := x.TextFormatSource.GetSpecifier().(*corev3.DataSource_InlineString)
			if !ok {
				return fieldErr(".log_format.text_format_source", "only inline_string: %w", errUnsupported)
			}
			text = s.InlineString
		case *corev3.SubstitutionFormatString_JsonFormat:
			n, err := compileJSON(structpb.NewStructValue(x.JsonFormat))
			if err != nil {
				return fieldErr(".log_format.json_format", "%w", err)
			}
			a.json = n
			a.reqHeaders = n.headers(nil)
			return nil
		}
	}
	parts, err := parseLogFormat(text)
	if err != nil {
		return fieldErr(".log_format", "%w", err)
	}
	a.text = parts
	for _, p := range parts {
		a.reqHeaders = p.op.headers(a.reqHeaders)
	}
	return nil
}

// logOpKind is a command operator.
type logOpKind int

const (
	opLiteral logOpKind = iota
	opStartTime
	opReq
	opResp
	opProtocol
	opResponseCode
	opResponseFlags
	opResponseCodeDetails
	opBytesReceived
	opBytesSent
	opDuration
	opUpstreamHost
	opUpstreamCluster
	opDownstreamRemote
	opDownstreamRemoteNoPort
	opDownstreamLocal
	opRequestedServerName
	opRouteName
	opHostname
	opTraceID
	opEmpty // operators the proxy knows but has no value for ("-")
)

var logOps = map[string]logOpKind{
	"START_TIME": opStartTime, "REQ": opReq, "RESP": opResp, "PROTOCOL": opProtocol,
	"RESPONSE_CODE": opResponseCode, "RESPONSE_FLAGS": opResponseFlags, "RESPONSE_CODE_DETAILS": opResponseCodeDetails,
	"BYTES_RECEIVED": opBytesReceived, "BYTES_SENT": opBytesSent, "DURATION": opDuration,
	"UPSTREAM_HOST": opUpstreamHost, "UPSTREAM_CLUSTER": opUpstreamCluster, "UPSTREAM_CLUSTER_RAW": opUpstreamCluster,
	"DOWNSTREAM_REMOTE_ADDRESS": opDownstreamRemote, "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": opDownstreamRemoteNoPort,
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS": opDownstreamRemote, "DOWNSTREAM_LOCAL_ADDRESS": opDownstreamLocal,
	"REQUESTED_SERVER_NAME": opRequestedServerName, "ROUTE_NAME": opRouteName, "HOSTNAME": opHostname,
	"TRACE_ID":                       opTraceID,
	"CONNECTION_TERMINATION_DETAILS": opEmpty, "UPSTREAM_TRANSPORT_FAILURE_REASON": opEmpty,
	"UPSTREAM_LOCAL_ADDRESS": opEmpty, "UPSTREAM_REQUEST_ATTEMPT_COUNT": opEmpty,
}

// logOp is a parsed command operator: REQ(X?Y):N has header X, fallback
// Y and max length N.
type logOp struct {
	kind      logOpKind
	literal   string
	arg, alt  string // canonical header names, or START_TIME's format
	maxLen    int    // 0: unlimited
	startTime timeFormat
}

// logPart is one piece of a text format.
type logPart struct{ op logOp }

// headers appends the request headers op reads to names.
func (op logOp) headers(names []string) []string {
	if op.kind != opReq {
		return names
	}
	for _, h := range []string{op.arg, op.alt} {
		if h != "" && h[0] != ':' && !containsString(names, h) {
			names = append(names, h)
		}
	}
	return names
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseLogFormat splits a text format into literals and operators, as
// Envoy's substitution formatter does; an unknown operator is an error.
func parseLogFormat(s string) ([]logPart, error) {
	var parts []logPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, logPart{op: logOp{kind: opLiteral, literal: lit.String()}})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		end := opEnd(s, i+1)
		if end < 0 {
			return nil, fmt.Errorf("format %q: unterminated command operator at %d", s, i)
		}
		op, err := parseLogOp(s[i+1 : end])
		if err != nil {
			return nil, err
		}
		flush()
		parts = append(parts, logPart{op: op})
		i = end
	}
	flush()
	return parts, nil
}

// opEnd returns the index of the '%' closing the operator that starts at
// i (after its opening '%'), skipping a parenthesized argument, which may
// hold '%' (START_TIME(%Y)); -1 when there is none.
func opEnd(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '%':
			return i
		case '(':
			j := strings.IndexByte(s[i:], ')')
			if j < 0 {
				return -1
			}
			i += j
		}
	}
	return -1
}

// parseLogOp parses NAME, NAME(ARG) or NAME(ARG):N.
func parseLogOp(s string) (logOp, error) {
	name, arg, maxLen := s, "", 0
	if i := strings.IndexByte(s, '('); i >= 0 {
		j := strings.LastIndexByte(s, ')')
		if j < i {
			return logOp{}, fmt.Errorf("command operator %%%s%%: unbalanced parentheses", s)
		}
		name, arg = s[:i], s[i+1:j]
		if rest := s[j+1:]; rest != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
			if !strings.HasPrefix(rest, ":") || err != nil || n <= 0 {
				return logOp{}, fmt.Errorf("command operator %%%s%%: bad length %q", s, rest)
			}
			maxLen = n
		}
	}
	kind, ok := logOps[name]
	if !ok {
		return logOp{}, fmt.Errorf("command operator %%%s%%: %w", name, errUnsupported)
	}
	op := logOp{kind: kind, maxLen: maxLen}
	switch kind {
	case opReq, opResp:
		if arg == "" {
			return logOp{}, fmt.Errorf("command operator %%%s%%: a header name is required", s)
		}
		a, b, _ := strings.Cut(arg, "?")
		op.arg, op.alt = canonicalLogHeader(a), canonicalLogHeader(b)
	case opStartTime:
		op.startTime = parseTimeFormat(arg)
	}
	return op, nil
}

// canonicalLogHeader maps a header name of a format to the key the
// request's header map uses; pseudo-headers stay lowercase (":path").
func canonicalLogHeader(h string) string {
	if h == "" || h[0] == ':' {
		return strings.ToLower(h)
	}
	return http.CanonicalHeaderKey(h)
}

// jsonNode is a compiled json_format value: an object of nodes, or a
// string of parts (typed when it is one operator alone), or a constant.
type jsonNode struct {
	fields []jsonField // object
	parts  []logPart   // string value
	value  any         // a constant (number, bool, null)
	isObj  bool
}

type jsonField struct {
	key  string
	node *jsonNode
}

func compileJSON(v *structpb.Value) (*jsonNode, error) {
	switch x := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		n := &jsonNode{isObj: true}
		keys := make([]string, 0, len(x.StructValue.GetFields()))
		for k := range x.StructValue.GetFields() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, err := compileJSON(x.StructValue.GetFields()[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			n.fields = append(n.fields, jsonField{key: k, node: c})
		}
		return n, nil
	case *structpb.Value_StringValue:
		parts, err := parseLogFormat(x.StringValue)
		if err != nil {
			return nil, err
		}
		return &jsonNode{parts: parts}, nil
	case *structpb.Value_ListValue:
		return nil, errors.New("lists are not supported in json_format")
	default:
		return &jsonNode{value: v.AsInterface()}, nil
	}
}

func (n *jsonNode) headers(names []string) []string {
	for _, f := range n.fields {
		names = f.node.headers(names)
	}
	for _, p := range n.parts {
		names = p.op.headers(names)
	}
	return names
}

// logRecord is what one request's access log lines read.
type logRecord struct {
	start    time.Time
	duration time.Duration
	r        *http.Request
	rs       *requestState
	// reqHeaders are the values of the format's request headers as the
	// client sent them (with the x-request-id the proxy generated),
	// captured before forwarding rewrites them.
	reqHeaders map[string]string
	path       string // :path as received
	respHeader http.Header
	received   int64
	sent       int64
	traceID    string
	hostname   string
}

// value renders one operator; ok is false when it has no value ("-" in
// text, null in JSON).
func (rec *logRecord) value(op *logOp) (s string, num int64, isNum, ok bool) {
	switch op.kind {
	case opLiteral:
		return op.literal, 0, false, true
	case opStartTime:
		return op.startTime.format(rec.start), 0, false, true
	case opReq:
		for _, h := range []string{op.arg, op.alt} {
			if v := rec.requestHeader(h); v != "" {
				return v, 0, false, true
			}
		}
		return "", 0, false, false
	case opResp:
		for _, h := range []string{op.arg, op.alt} {
			if h == "" {
				continue
			}
			if v := rec.respHeader.Get(h); v != "" {
				return v, 0, false, true
			}
		}
		return "", 0, false, false
	case opProtocol:
		return rec.r.Proto, 0, false, true
	case opResponseCode:
		return "", int64(rec.rs.code), true, true
	case opResponseFlags:
		return rec.rs.flags.String(), 0, false, true
	case opResponseCodeDetails:
		return responseCodeDetails(rec.rs), 0, false, true
	case opBytesReceived:
		return "", rec.received, true, true
	case opBytesSent:
		return "", rec.sent, true, true
	case opDuration:
		return "", rec.duration.Milliseconds(), true, true
	case opUpstreamHost:
		if e := rec.rs.endpoint; e != nil {
			return e.addr, 0, false, true
		}
	case opUpstreamCluster:
		if c := rec.rs.cluster; c != nil {
			return c.name, 0, false, true
		}
	case opDownstreamRemote:
		return rec.r.RemoteAddr, 0, false, rec.r.RemoteAddr != ""
	case opDownstreamRemoteNoPort:
		if h, _, err := net.SplitHostPort(rec.r.RemoteAddr); err == nil {
			return h, 0, false, true
		}
	case opDownstreamLocal:
		if a, ok := rec.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			return a.String(), 0, false, true
		}
	case opRequestedServerName:
		if rec.r.TLS != nil && rec.r.TLS.ServerName != "" {
			return rec.r.TLS.ServerName, 0, false, true
		}
	case opRouteName:
		if rt := rec.rs.route; rt != nil && rt.name != "" {
			return rt.name, 0, false, true
		}
	case opHostname:
		return rec.hostname, 0, false, rec.hostname != ""
	case opTraceID:
		return rec.traceID, 0, false, rec.traceID != ""
	}
	return "", 0, false, false
}

func (rec *logRecord) requestHeader(h string) string {
	switch h {
	case "":
		return ""
	case ":path":
		return rec.path
	case ":method":
		return rec.r.Method
	case ":authority":
		return rec.r.Host
	case ":scheme":
		if rec.r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return rec.reqHeaders[h]
}

// responseCodeDetails approximates Envoy's %RESPONSE_CODE_DETAILS%.
func responseCodeDetails(rs *requestState) string {
	switch f := rs.flags; {
	case f&flagNoRoute != 0:
		return "route_not_found"
	case f&flagNoClusterFound != 0:
		return "cluster_not_found"
	case f&flagNoHealthyUpstream != 0:
		return "no_healthy_upstream"
	case f&flagUpstreamOverflow != 0:
		return "upstream_reset_before_response_started{overflow}"
	case f&flagUpstreamConnFail != 0:
		return "upstream_reset_before_response_started{connection_failure}"
	case f&flagUpstreamTimeout != 0:
		return "upstream_response_timeout"
	case f&flagFaultInjected != 0:
		return "fault_filter_abort"
	case f&flagRBACDenied != 0:
		return "rbac_access_denied_matched_policy[none]"
	case f&flagDownstreamClosed != 0:
		return "downstream_remote_disconnect"
	case f&flagUpstreamReset != 0:
		return "upstream_reset_before_response_started{connection_termination}"
	case rs.endpoint != nil && rs.code != 0:
		return "via_upstream"
	}
	return "-"
}

// appendText renders a text format.
func (rec *logRecord) appendText(b []byte, parts []logPart) []byte {
	for i := range parts {
		op := &parts[i].op
		s, n, isNum, ok := rec.value(op)
		switch {
		case !ok:
			s = "-"
		case isNum:
			s = strconv.FormatInt(n, 10)
		}
		if op.maxLen > 0 && len(s) > op.maxLen {
			s = s[:op.maxLen]
		}
		b = append(b, s...)
	}
	return b
}

// jsonValue renders a json_format node: one operator alone keeps its
// type (a number, or null without a value), as Envoy's typed JSON does.
func (rec *logRecord) jsonValue(n *jsonNode, omitEmpty bool) (any, bool) {
	switch {
	case n.isObj:
		obj := make(orderedObject, 0, len(n.fields))
		for _, f := range n.fields {
			if v, ok := rec.jsonValue(f.node, omitEmpty); ok {
				obj = append(obj, jsonField{key: f.key, node: &jsonNode{value: v}})
			}
		}
		return obj, !omitEmpty || len(obj) > 0
	case n.parts == nil:
		return n.value, true
	case len(n.parts) == 1 && n.parts[0].op.kind != opLiteral:
		op := &n.parts[0].op
		s, num, isNum, ok := rec.value(op)
		switch {
		case !ok:
			return nil, !omitEmpty
		case isNum:
			return num, true
		}
		if op.maxLen > 0 && len(s) > op.maxLen {
			s = s[:op.maxLen]
		}
		return s, !omitEmpty || s != ""
	}
	s := string(rec.appendText(nil, n.parts))
	return s, !omitEmpty || s != ""
}

// orderedObject is a JSON object written in its fields' order (sorted
// keys).
type orderedObject []jsonField

// MarshalJSON writes the fields in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(f.key)
		v, err := json.Marshal(f.node.value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// line renders the access log line of rec.
func (a *accessLog) line(rec *logRecord) []byte {
	if a.json == nil {
		return rec.appendText(make([]byte, 0, 256), a.text)
	}
	v, _ := rec.jsonValue(a.json, a.omitEmpty)
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(strconv.Quote(err.Error()))
	}
	return append(b, '\n')
}

// timeFormat is START_TIME's format: Envoy's default
// (2006-01-02T15:04:05.000Z, UTC) or a strftime subset (%Y %m %d %H %M
// %S %s %z %f and %E<n>S / %<n>f for fractions).
type timeFormat struct {
	layout string // Go layout; "" for Envoy's default
	epoch  bool   // %s alone
}

func parseTimeFormat(f string) timeFormat {
	if f == "" {
		return timeFormat{}
	}
	if f == "%s" {
		return timeFormat{epoch: true}
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch c := f[i]; c {
		case 'Y':
			b.WriteString("2006")
		case 'm':
			b.WriteString("01")
		case 'd':
			b.WriteString("02")
		case 'H':
			b.WriteString("15")
		case 'M':
			b.WriteString("04")
		case 'S':
			b.WriteString("05")
		case 'z':
			b.WriteString("-0700")
		case 'Z':
			b.WriteString("MST")
		case 'f':
			b.WriteString("05.000000000")
		case 'E':
			if i+2 < len(f) && f[i+1] >= '1' && f[i+1] <= '9' && f[i+2] == 'S' {
				b.WriteString("05." + strings.Repeat("0", int(f[i+1]-'0')))
				i += 2
				continue
			}
			b.WriteString("%E")
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
	return timeFormat{layout: b.String()}
}

func (tf timeFormat) format(t time.Time) string {
	t = t.UTC()
	switch {
	case tf.epoch:
		return strconv.FormatInt(t.Unix(), 10)
	case tf.layout == "":
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return t.Format(tf.layout)
}

// logSink is an open access log file, shared by every logger that
// writes it.
type logSink struct {
	mu sync.Mutex // serializes writes, so lines never interleave
	f  *os.File
	// owned is true when the sink opened f (and closes it).
	owned bool
}

func openLogSink(path string) (*logSink, error) {
	switch path {
	case "/dev/stdout":
		return &logSink{f: os.Stdout}, nil
	case "/dev/stderr":
		return &logSink{f: os.Stderr}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening access log: %w", err)
	}
	return &logSink{f: f, owned: true}, nil
}

// write appends one line.
func (s *logSink) write(line []byte) {
	s.mu.Lock()
	s.f.Write(line)
	s.mu.Unlock()
}

func (s *logSink) close() {
	if s.owned {
		s.mu.Lock()
		s.f.Close()
		s.mu.Unlock()
	}
}

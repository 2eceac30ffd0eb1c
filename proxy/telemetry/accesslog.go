package telemetry

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/proxy/metrics"
)

// logRecord is what one request's access log lines read.
type logRecord struct {
	start    time.Time
	duration time.Duration
	r        *http.Request
	o        Outcome
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
func (rec *logRecord) value(op *Op) (s string, num int64, isNum, ok bool) {
	switch op.Kind {
	case OpLiteral:
		return op.Literal, 0, false, true
	case OpStartTime:
		return op.StartTime.format(rec.start), 0, false, true
	case OpReq:
		for _, h := range []string{op.Arg, op.Alt} {
			if v := rec.requestHeader(h); v != "" {
				return v, 0, false, true
			}
		}
		return "", 0, false, false
	case OpResp:
		for _, h := range []string{op.Arg, op.Alt} {
			if h == "" {
				continue
			}
			if v := rec.respHeader.Get(h); v != "" {
				return v, 0, false, true
			}
		}
		return "", 0, false, false
	case OpProtocol:
		return rec.r.Proto, 0, false, true
	case OpResponseCode:
		return "", int64(rec.o.ResponseCode()), true, true
	case OpResponseFlags:
		return rec.o.ResponseFlags().String(), 0, false, true
	case OpResponseCodeDetails:
		return responseCodeDetails(rec.o), 0, false, true
	case OpBytesReceived:
		return "", rec.received, true, true
	case OpBytesSent:
		return "", rec.sent, true, true
	case OpDuration:
		return "", rec.duration.Milliseconds(), true, true
	case OpUpstreamHost:
		h := rec.o.UpstreamHost()
		return h, 0, false, h != ""
	case OpUpstreamCluster:
		c := rec.o.UpstreamCluster()
		return c, 0, false, c != ""
	case OpDownstreamRemote:
		return rec.r.RemoteAddr, 0, false, rec.r.RemoteAddr != ""
	case OpDownstreamRemoteNoPort:
		if h, _, err := net.SplitHostPort(rec.r.RemoteAddr); err == nil {
			return h, 0, false, true
		}
	case OpDownstreamLocal:
		if a, ok := rec.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			return a.String(), 0, false, true
		}
	case OpRequestedServerName:
		if rec.r.TLS != nil && rec.r.TLS.ServerName != "" {
			return rec.r.TLS.ServerName, 0, false, true
		}
	case OpRouteName:
		n := rec.o.RouteName()
		return n, 0, false, n != ""
	case OpHostname:
		return rec.hostname, 0, false, rec.hostname != ""
	case OpTraceID:
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
func responseCodeDetails(o Outcome) string {
	switch f := o.ResponseFlags(); {
	case f&metrics.FlagNoRoute != 0:
		return "route_not_found"
	case f&metrics.FlagNoClusterFound != 0:
		return "cluster_not_found"
	case f&metrics.FlagNoHealthyUpstream != 0:
		return "no_healthy_upstream"
	case f&metrics.FlagUpstreamOverflow != 0:
		return "upstream_reset_before_response_started{overflow}"
	case f&metrics.FlagUpstreamConnFail != 0:
		return "upstream_reset_before_response_started{connection_failure}"
	case f&metrics.FlagUpstreamTimeout != 0:
		return "upstream_response_timeout"
	case f&metrics.FlagFaultInjected != 0:
		return "fault_filter_abort"
	case f&metrics.FlagRBACDenied != 0:
		return "rbac_access_denied_matched_policy[none]"
	case f&metrics.FlagDownstreamClosed != 0:
		return "downstream_remote_disconnect"
	case f&metrics.FlagUpstreamReset != 0:
		return "upstream_reset_before_response_started{connection_termination}"
	case o.UpstreamHost() != "" && o.ResponseCode() != 0:
		return "via_upstream"
	}
	return "-"
}

// appendText renders a text format.
func (rec *logRecord) appendText(b []byte, parts []Op) []byte {
	for i := range parts {
		op := &parts[i]
		s, n, isNum, ok := rec.value(op)
		switch {
		case !ok:
			s = "-"
		case isNum:
			s = strconv.FormatInt(n, 10)
		}
		if op.MaxLen > 0 && len(s) > op.MaxLen {
			s = s[:op.MaxLen]
		}
		b = append(b, s...)
	}
	return b
}

// jsonValue renders a json_format node: one operator alone keeps its
// type (a number, or null without a value), as Envoy's typed JSON does.
func (rec *logRecord) jsonValue(n *JSONNode, omitEmpty bool) (any, bool) {
	switch {
	case n.IsObj:
		obj := make(orderedObject, 0, len(n.Fields))
		for _, f := range n.Fields {
			if v, ok := rec.jsonValue(f.Node, omitEmpty); ok {
				obj = append(obj, JSONField{Key: f.Key, Node: &JSONNode{Value: v}})
			}
		}
		return obj, !omitEmpty || len(obj) > 0
	case n.Parts == nil:
		return n.Value, true
	case len(n.Parts) == 1 && n.Parts[0].Kind != OpLiteral:
		op := &n.Parts[0]
		s, num, isNum, ok := rec.value(op)
		switch {
		case !ok:
			return nil, !omitEmpty
		case isNum:
			return num, true
		}
		if op.MaxLen > 0 && len(s) > op.MaxLen {
			s = s[:op.MaxLen]
		}
		return s, !omitEmpty || s != ""
	}
	s := string(rec.appendText(nil, n.Parts))
	return s, !omitEmpty || s != ""
}

// orderedObject is a JSON object written in its fields' order (sorted
// keys).
type orderedObject []JSONField

// MarshalJSON writes the fields in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(f.Key)
		v, err := json.Marshal(f.Node.Value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// line renders the access log line of rec.
func (a *AccessLog) line(rec *logRecord) []byte {
	if a.JSON == nil {
		return rec.appendText(make([]byte, 0, 256), a.Text)
	}
	v, _ := rec.jsonValue(a.JSON, a.OmitEmpty)
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(strconv.Quote(err.Error()))
	}
	return append(b, '\n')
}

func (tf TimeFormat) format(t time.Time) string {
	t = t.UTC()
	switch {
	case tf.Epoch:
		return strconv.FormatInt(t.Unix(), 10)
	case tf.Layout == "":
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return t.Format(tf.Layout)
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

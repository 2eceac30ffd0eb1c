package config

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"google.golang.org/protobuf/types/known/structpb"
)

// logOps maps the command operators the proxy implements to their kinds.
var logOps = map[string]telemetry.OpKind{
	"START_TIME": telemetry.OpStartTime, "REQ": telemetry.OpReq, "RESP": telemetry.OpResp, "PROTOCOL": telemetry.OpProtocol,
	"RESPONSE_CODE": telemetry.OpResponseCode, "RESPONSE_FLAGS": telemetry.OpResponseFlags, "RESPONSE_CODE_DETAILS": telemetry.OpResponseCodeDetails,
	"BYTES_RECEIVED": telemetry.OpBytesReceived, "BYTES_SENT": telemetry.OpBytesSent, "DURATION": telemetry.OpDuration,
	"UPSTREAM_HOST": telemetry.OpUpstreamHost, "UPSTREAM_CLUSTER": telemetry.OpUpstreamCluster, "UPSTREAM_CLUSTER_RAW": telemetry.OpUpstreamCluster,
	"DOWNSTREAM_REMOTE_ADDRESS": telemetry.OpDownstreamRemote, "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": telemetry.OpDownstreamRemoteNoPort,
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS": telemetry.OpDownstreamRemote, "DOWNSTREAM_LOCAL_ADDRESS": telemetry.OpDownstreamLocal,
	"REQUESTED_SERVER_NAME": telemetry.OpRequestedServerName, "ROUTE_NAME": telemetry.OpRouteName, "HOSTNAME": telemetry.OpHostname,
	"TRACE_ID":                       telemetry.OpTraceID,
	"CONNECTION_TERMINATION_DETAILS": telemetry.OpEmpty, "UPSTREAM_TRANSPORT_FAILURE_REASON": telemetry.OpEmpty,
	"UPSTREAM_LOCAL_ADDRESS": telemetry.OpEmpty, "UPSTREAM_REQUEST_ATTEMPT_COUNT": telemetry.OpEmpty,
}

// opHeaders appends the request headers op reads to names.
func opHeaders(op telemetry.Op, names []string) []string {
	if op.Kind != telemetry.OpReq {
		return names
	}
	for _, h := range []string{op.Arg, op.Alt} {
		if h != "" && h[0] != ':' && !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return names
}

// jsonHeaders appends the request headers a json_format reads to names.
func jsonHeaders(n *telemetry.JSONNode, names []string) []string {
	for _, f := range n.Fields {
		names = jsonHeaders(f.Node, names)
	}
	for _, op := range n.Parts {
		names = opHeaders(op, names)
	}
	return names
}

// parseLogFormat splits a text format into literals and operators, as
// Envoy's substitution formatter does; an unknown operator is an error.
func parseLogFormat(s string) ([]telemetry.Op, error) {
	var parts []telemetry.Op
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, telemetry.Op{Kind: telemetry.OpLiteral, Literal: lit.String()})
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
		parts = append(parts, op)
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
func parseLogOp(s string) (telemetry.Op, error) {
	name, arg, maxLen := s, "", 0
	if i := strings.IndexByte(s, '('); i >= 0 {
		j := strings.LastIndexByte(s, ')')
		if j < i {
			return telemetry.Op{}, fmt.Errorf("command operator %%%s%%: unbalanced parentheses", s)
		}
		name, arg = s[:i], s[i+1:j]
		if rest := s[j+1:]; rest != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
			if !strings.HasPrefix(rest, ":") || err != nil || n <= 0 {
				return telemetry.Op{}, fmt.Errorf("command operator %%%s%%: bad length %q", s, rest)
			}
			maxLen = n
		}
	}
	kind, ok := logOps[name]
	if !ok {
		return telemetry.Op{}, fmt.Errorf("command operator %%%s%%: %w", name, ErrUnsupported)
	}
	op := telemetry.Op{Kind: kind, MaxLen: maxLen}
	switch kind {
	case telemetry.OpReq, telemetry.OpResp:
		if arg == "" {
			return telemetry.Op{}, fmt.Errorf("command operator %%%s%%: a header name is required", s)
		}
		a, b, _ := strings.Cut(arg, "?")
		op.Arg, op.Alt = canonicalLogHeader(a), canonicalLogHeader(b)
	case telemetry.OpStartTime:
		op.StartTime = parseTimeFormat(arg)
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

// compileJSON compiles a json_format value; object keys are sorted, so
// lines are written in a stable order.
func compileJSON(v *structpb.Value) (*telemetry.JSONNode, error) {
	switch x := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		n := &telemetry.JSONNode{IsObj: true}
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
			n.Fields = append(n.Fields, telemetry.JSONField{Key: k, Node: c})
		}
		return n, nil
	case *structpb.Value_StringValue:
		parts, err := parseLogFormat(x.StringValue)
		if err != nil {
			return nil, err
		}
		return &telemetry.JSONNode{Parts: parts}, nil
	case *structpb.Value_ListValue:
		return nil, errors.New("lists are not supported in json_format")
	default:
		return &telemetry.JSONNode{Value: v.AsInterface()}, nil
	}
}

// parseTimeFormat translates START_TIME's strftime subset (%Y %m %d %H %M
// %S %s %z %Z %f, %E<n>S for fractions) into a Go layout.
func parseTimeFormat(f string) telemetry.TimeFormat {
	if f == "" {
		return telemetry.TimeFormat{}
	}
	if f == "%s" {
		return telemetry.TimeFormat{Epoch: true}
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
	return telemetry.TimeFormat{Layout: b.String()}
}

package config

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"google.golang.org/protobuf/types/known/anypb"
)

// outcome is a request's outcome as the proxy would report it.
type outcome struct {
	code          int
	flags         metrics.ResponseFlags
	cluster, host string
	route         string
}

func (o outcome) ResponseCode() int                    { return o.code }
func (o outcome) ResponseFlags() metrics.ResponseFlags { return o.flags }
func (o outcome) UpstreamCluster() string              { return o.cluster }
func (o outcome) UpstreamHost() string                 { return o.host }
func (o outcome) RouteName() string                    { return o.route }

func fileAccessLog(t testing.TB, path string, fl *filev3.FileAccessLog) *accesslogv3.AccessLog {
	t.Helper()
	fl.Path = path
	a, err := anypb.New(fl)
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLog{Name: telemetry.FileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}}
}

// logLine builds the access logger, serves one request through it with
// telemetry's request hooks and returns the line written.
func logLine(t *testing.T, al *accesslogv3.AccessLog, req *http.Request, start time.Time, body string, o telemetry.Outcome) string {
	t.Helper()
	l, fe := buildAccessLog(al)
	if fe != nil {
		t.Fatalf("building %s: %v", fe.Field, fe.Err)
	}
	hcm := &telemetry.HCM{Logs: []*telemetry.AccessLog{l}, ReqHeaders: l.ReqHeaders}
	sinks := telemetry.NewSinks("node", nil, slog.New(slog.DiscardHandler))
	sinks.Attach([]*telemetry.HCM{hcm})
	rt, w := hcm.Begin(httptest.NewRecorder(), req, start)
	io.Copy(io.Discard, req.Body)
	io.WriteString(w, body)
	rt.End(o)
	sinks.Close()
	b, err := os.ReadFile(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAccessLogFormats: Envoy's default format when a file logger names
// none, and text formats with truncation, fallbacks and START_TIME.
func TestAccessLogFormats(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	tests := []struct {
		name   string
		format string // "" for Envoy's default
		o      outcome
		want   string // a regexp, anchored
	}{
		{
			name: "default",
			o:    outcome{code: 503, flags: metrics.FlagUpstreamConnFail | metrics.FlagRetryLimitExceeded},
			want: `\[2026-01-02T03:04:05\.006Z\] "POST /p\?q=1 HTTP/1\.1" 503 UF,URX 3 19 \d+ - "-" "-" "r" "svc" "-"` + "\n",
		},
		{
			name:   "operators",
			format: "%START_TIME(%Y/%m/%d %H:%M:%E3S)% %REQ(X-NOPE?:PATH):4% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %ROUTE_NAME% %RESPONSE_CODE_DETAILS% 100%%\n",
			o:      outcome{code: 200, cluster: "b", host: "10.0.0.1:80", route: "default"},
			want:   `2026/01/02 03:04:05\.006 /p\?q b 10\.0\.0\.1:80 default via_upstream 100%` + "\n",
		},
		{
			name:   "no values",
			format: "%UPSTREAM_HOST% %ROUTE_NAME% %RESP(X-NOPE)% %UPSTREAM_LOCAL_ADDRESS%\n",
			o:      outcome{code: 404, flags: metrics.FlagNoRoute},
			want:   "- - - -\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := &filev3.FileAccessLog{}
			if tt.format != "" {
				fl.AccessLogFormat = &filev3.FileAccessLog_Format{Format: tt.format}
			}
			req := httptest.NewRequest("POST", "http://svc/p?q=1", strings.NewReader("abc"))
			req.RequestURI = "/p?q=1" // as the server sets it
			req.Header.Set("X-Request-Id", "r")
			got := logLine(t, fileAccessLog(t, filepath.Join(t.TempDir(), "a.log"), fl), req, start, "nineteen bytes long", tt.o)
			if !regexp.MustCompile(`^` + tt.want + `$`).MatchString(got) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestParseLogFormatErrors: what Envoy refuses in a format is refused,
// unknown operators as unsupported.
func TestParseLogFormatErrors(t *testing.T) {
	tests := []struct {
		format      string
		unsupported bool
	}{
		{"%NOPE%", true},
		{"%REQ(:PATH)", false},
		{"%REQ()%", false},
		{"%REQ(:PATH):x%", false},
		{"%REQ(:PATH):0%", false},
		{"%START_TIME(%Y%", false},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			_, err := parseLogFormat(tt.format)
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
				t.Errorf("error %v: unsupported %v; want %v", err, got, tt.unsupported)
			}
		})
	}
}

// FuzzParseLogFormat: any format either parses and renders, or is an
// error; never a panic.
func FuzzParseLogFormat(f *testing.F) {
	for _, s := range []string{envoyDefaultLogFormat, "%START_TIME(%Y/%m/%d %E3S)%", "%REQ(:PATH):10% 100%%", "%RESP(X?Y)%", "%", "%REQ(%", "%START_TIME(%s)%"} {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "fuzz.log")
	sinks := telemetry.NewSinks("node", nil, slog.New(slog.DiscardHandler))
	f.Cleanup(sinks.Close)
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parseLogFormat(s)
		if err != nil {
			return
		}
		hcm := &telemetry.HCM{Logs: []*telemetry.AccessLog{{Path: path, Text: parts}}}
		sinks.Attach([]*telemetry.HCM{hcm})
		req := httptest.NewRequest("GET", "http://h/p", nil)
		rt, _ := hcm.Begin(httptest.NewRecorder(), req, time.Now())
		rt.End(outcome{})
	})
}

package compiler

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// telemetryMesh is the mesh config of the Telemetry tests: an OTLP
// collector (declared by collectorSE) and two file access logs.
const telemetryMesh = `
extensionProviders:
- name: otel
  opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
- name: otel-missing
  opentelemetry: {service: nowhere.example, port: 4317}
- name: zipkin
  zipkin: {service: zipkin.example, port: 9411}
- name: text-log
  envoyFileAccessLog: {path: /var/log/text.log, logFormat: {text: "%REQ(:METHOD)% %RESPONSE_CODE%"}}
- name: json-log
  envoyFileAccessLog: {path: /var/log/json.log, logFormat: {labels: {method: "%REQ(:METHOD)%", code: "%RESPONSE_CODE%"}}}
`

const collectorSE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel-collector, namespace: observability}
spec:
  hosts: [otel-collector.observability.svc.cluster.local]
  ports: [{number: 4317, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
`

func tel(name, ns, spec string) string {
	return fmt.Sprintf("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: %s, namespace: %s}\nspec: %s\n---\n", name, ns, spec)
}

func mustMesh(t *testing.T, s string) Option {
	t.Helper()
	mc, err := ReadMeshConfig([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return WithMeshConfig(mc)
}

// describeTelemetry summarizes the HCM telemetry of a class's listeners:
// "<listener>: trace=<cluster>@<percent> svc=<name> tags=<k,...> log=<path>:<format kind>".
func describeTelemetry(t *testing.T, policy string, class nodemeta.ProxyClass, opts ...Option) string {
	t.Helper()
	p, diags := Parse(splitObjects("case.yaml", []byte(policy)), opts...)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(class, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Resources.Consistent(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for name, r := range snap.Resources.Resources[types.Listener].Items {
		l := r.Resource.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() != wellknown.HTTPConnectionManager {
					continue
				}
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				parts := []string{name + ":"}
				if tr := hcm.GetTracing(); tr != nil {
					otel := &tracev3.OpenTelemetryConfig{}
					if err := tr.GetProvider().GetTypedConfig().UnmarshalTo(otel); err != nil {
						t.Fatal(err)
					}
					c := otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
					if _, ok := snap.Resources.Resources[types.Cluster].Items[c]; !ok {
						t.Errorf("tracing cluster %s is not in the snapshot", c)
					}
					parts = append(parts, fmt.Sprintf("trace=%s@%v", c, tr.GetRandomSampling().GetValue()), "svc="+otel.GetServiceName())
					var tags []string
					for _, ct := range tr.GetCustomTags() {
						tags = append(tags, ct.GetTag())
					}
					if len(tags) > 0 {
						parts = append(parts, "tags="+strings.Join(tags, ","))
					}
				}
				for _, al := range hcm.GetAccessLog() {
					fl := &filev3.FileAccessLog{}
					if err := al.GetTypedConfig().UnmarshalTo(fl); err != nil {
						t.Fatal(err)
					}
					kind := "text"
					switch {
					case fl.GetLogFormat().GetJsonFormat() != nil:
						kind = "json"
					case fl.GetLogFormat().GetTextFormatSource().GetInlineString() == IstioTextLogFormat:
						kind = "istio"
					}
					parts = append(parts, "log="+fl.GetPath()+":"+kind)
				}
				lines = append(lines, strings.Join(parts, " "))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(slices.Compact(lines), "\n") // one line for the chains of one listener
}

// TestTelemetryPrecedence: Istio's scopes (mesh-wide in the root
// namespace, namespace-wide, workload selector), each level overriding
// the fields it sets, with the mesh config's default providers below
// them, compiled into the HCM's tracing and access_log.
func TestTelemetryPrecedence(t *testing.T) {
	const (
		trace100 = "trace=outbound|4317||otel-collector.observability.svc.cluster.local@100 svc=reviews.default"
		trace1   = "trace=outbound|4317||otel-collector.observability.svc.cluster.local@1 svc=reviews.default"
		trace10  = "trace=outbound|4317||otel-collector.observability.svc.cluster.local@10 svc=reviews.default"
	)
	class := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Service: "reviews",
		Labels: map[string]string{"app": "reviews", "version": "v1"}, Outbound: "127.0.0.1:15001", Inbound: "127.0.0.1:15006", App: "127.0.0.1:8080"}
	tests := []struct {
		name   string
		policy string
		mesh   string
		want   []string // inbound, outbound
	}{
		{"no telemetry", "", telemetryMesh, []string{"inbound:", "outbound:"}},
		{"mesh-wide tracing", tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}"), telemetryMesh,
			[]string{"inbound: " + trace100, "outbound: " + trace100}},
		{"default sampling is 1%", tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}]}]}"), telemetryMesh,
			[]string{"inbound: " + trace1, "outbound: " + trace1}},
		{"defaultConfig sampling", tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}]}]}"), telemetryMesh + "defaultConfig: {tracing: {sampling: 10}}\n",
			[]string{"inbound: " + trace10, "outbound: " + trace10}},
		{"default provider without telemetry", "", telemetryMesh + "defaultProviders: {tracing: [otel]}\n",
			[]string{"inbound: " + trace1, "outbound: " + trace1}},
		{"namespace overrides the sampling, keeps the provider",
			tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}") +
				tel("ns", "default", "{tracing: [{randomSamplingPercentage: 10}]}"), telemetryMesh,
			[]string{"inbound: " + trace10, "outbound: " + trace10}},
		{"another namespace does not apply",
			tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}") +
				tel("ns", "other", "{tracing: [{randomSamplingPercentage: 10}]}"), telemetryMesh,
			[]string{"inbound: " + trace100, "outbound: " + trace100}},
		{"workload disables span reporting",
			tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}") +
				tel("wl", "default", "{selector: {matchLabels: {app: reviews}}, tracing: [{disableSpanReporting: true}]}"), telemetryMesh,
			[]string{"inbound:", "outbound:"}},
		{"workload selector that does not match",
			tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]}") +
				tel("wl", "default", "{selector: {matchLabels: {app: ratings}}, tracing: [{disableSpanReporting: true}]}"), telemetryMesh,
			[]string{"inbound: " + trace100, "outbound: " + trace100}},
		{"server side only", tel("mesh", "istio-system", "{tracing: [{match: {mode: SERVER}, providers: [{name: otel}], randomSamplingPercentage: 100}]}"), telemetryMesh,
			[]string{"inbound: " + trace100, "outbound:"}},
		{"custom tags", tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100, customTags: {env: {literal: {value: prod}}, user: {header: {name: x-user}}}}]}"), telemetryMesh,
			[]string{"inbound: " + trace100 + " tags=env,user", "outbound: " + trace100 + " tags=env,user"}},
		{"envoy access log", tel("mesh", "istio-system", "{accessLogging: [{providers: [{name: envoy}]}]}"), telemetryMesh,
			[]string{"inbound: log=/dev/stdout:istio", "outbound: log=/dev/stdout:istio"}},
		{"access log without providers is envoy", tel("mesh", "istio-system", "{accessLogging: [{}]}"), telemetryMesh,
			[]string{"inbound: log=/dev/stdout:istio", "outbound: log=/dev/stdout:istio"}},
		{"accessLogFile", "", telemetryMesh + "accessLogFile: /tmp/a.log\naccessLogEncoding: JSON\n",
			[]string{"inbound: log=/tmp/a.log:json", "outbound: log=/tmp/a.log:json"}},
		{"namespace switches text to json",
			tel("mesh", "istio-system", "{accessLogging: [{providers: [{name: text-log}]}]}") +
				tel("ns", "default", "{accessLogging: [{providers: [{name: text-log}], disabled: true}, {providers: [{name: json-log}]}]}"), telemetryMesh,
			[]string{"inbound: log=/var/log/json.log:json", "outbound: log=/var/log/json.log:json"}},
		{"workload disables the default provider", tel("wl", "default", "{selector: {matchLabels: {version: v1}}, accessLogging: [{disabled: true}]}"),
			telemetryMesh + "defaultProviders: {accessLogging: [text-log]}\n",
			[]string{"inbound:", "outbound:"}},
		{"client side log", tel("mesh", "istio-system", "{accessLogging: [{match: {mode: CLIENT}, providers: [{name: text-log}]}]}"), telemetryMesh,
			[]string{"inbound:", "outbound: log=/var/log/text.log:text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeTelemetry(t, collectorSE+tt.policy, class, mustMesh(t, tt.mesh))
			if want := strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestTelemetryGateway: a gateway's listeners are the CLIENT side and
// carry the collector cluster.
func TestTelemetryGateway(t *testing.T) {
	policy := collectorSE + tel("mesh", "istio-system", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 50}], accessLogging: [{}]}") + `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {app: gw}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`
	class := nodemeta.ProxyClass{Role: nodemeta.RoleGateway, Namespace: "default", Labels: map[string]string{"app": "gw"}, Gateway: []string{"127.0.0.1:80"}}
	got := describeTelemetry(t, policy, class, mustMesh(t, telemetryMesh))
	if !strings.Contains(got, "trace=outbound|4317||otel-collector.observability.svc.cluster.local@50 svc=gw.default log=/dev/stdout:istio") {
		t.Errorf("gateway telemetry:\n%s", got)
	}
}

// TestTelemetryDiagnostics: what Telemetry validation reports, each at
// its field ("CODE severity field").
func TestTelemetryDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"valid", tel("a", "default", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 5, customTags: {a: {literal: {value: b}}}}], accessLogging: [{providers: [{name: envoy}, {name: json-log}]}]}"), nil},
		{"unknown tracing provider", tel("a", "default", "{tracing: [{providers: [{name: jaeger}]}]}"), []string{"GM0250 error spec.tracing[0].providers[0].name"}},
		{"unknown log provider", tel("a", "default", "{accessLogging: [{providers: [{name: stdout}]}]}"), []string{"GM0250 error spec.accessLogging[0].providers[0].name"}},
		{"envoy is not a tracer", tel("a", "default", "{tracing: [{providers: [{name: envoy}]}]}"), []string{"GM0250 error spec.tracing[0].providers[0].name"}},
		{"zipkin is not supported", tel("a", "default", "{tracing: [{providers: [{name: zipkin}]}]}"), []string{"GM0252 error spec.tracing[0].providers[0].name"}},
		{"a log provider in tracing", tel("a", "default", "{tracing: [{providers: [{name: text-log}]}]}"), []string{"GM0252 error spec.tracing[0].providers[0].name"}},
		{"a tracer in access logging", tel("a", "default", "{accessLogging: [{providers: [{name: otel}]}]}"), []string{"GM0252 error spec.accessLogging[0].providers[0].name"}},
		{"two tracing providers", tel("a", "default", "{tracing: [{providers: [{name: otel}, {name: otel}]}]}"), []string{"GM0252 warning spec.tracing[0].providers[1].name"}},
		{"collector not in the mesh", tel("a", "default", "{tracing: [{providers: [{name: otel-missing}]}]}"), []string{"GM0254 error spec.tracing[0].providers[0].name"}},
		{"filter expression", tel("a", "default", "{accessLogging: [{filter: {expression: 'response.code >= 400'}}]}"), []string{"GM0253 error spec.accessLogging[0].filter.expression"}},
		{"sampling above 100", tel("a", "default", "{tracing: [{randomSamplingPercentage: 150}]}"), []string{"GM0102 error spec.tracing[0].randomSamplingPercentage"}},
		{"metrics are not supported", tel("a", "default", "{metrics: [{providers: [{name: prometheus}]}]}"), []string{"GM0104 error spec.metrics"}},
		{"formatter tags are not supported", tel("a", "default", "{tracing: [{customTags: {a: {formatter: {value: x}}}}]}"), []string{"GM0104 error spec.tracing[0].customTags.a.formatter"}},
		{"two namespace-wide", tel("a", "default", "{}") + tel("b", "default", "{}"), []string{"GM0251 warning metadata.name"}},
		{"two with one selector", tel("a", "default", "{selector: {matchLabels: {app: x}}}") + tel("b", "default", "{selector: {matchLabels: {app: x}}}"), []string{"GM0251 warning spec.selector"}},
		{"selector in the root namespace", tel("a", "istio-system", "{selector: {matchLabels: {app: x}}}"), []string{"GM0255 warning spec.selector"}},
		{"v1alpha1", strings.Replace(tel("a", "default", "{}"), "telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1", 1), nil},
		{"unsupported version", strings.Replace(tel("a", "default", "{}"), "telemetry.istio.io/v1", "telemetry.istio.io/v2", 1), []string{"GM0107 error apiVersion"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(collectorSE+tt.yaml)), mustMesh(t, telemetryMesh))
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+string(d.Severity)+" "+d.Field)
				if d.Origin.File != "case.yaml" || d.Origin.Line <= 0 {
					t.Errorf("diagnostic without file:line: %s", d)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got diagnostics\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestTelemetryWithoutMeshConfig: without a mesh config (gitmesh
// validate, gitmesh diff) provider names are not checked but said to be
// unchecked; with an empty one they are unknown.
func TestTelemetryWithoutMeshConfig(t *testing.T) {
	policy := tel("a", "default", "{tracing: [{providers: [{name: otel}]}], accessLogging: [{providers: [{name: envoy}]}]}")
	for _, tt := range []struct {
		name string
		opts []Option
		want string
	}{
		{"not given", nil, "GM0250 info spec.tracing[0].providers[0].name"},
		{"nil", []Option{WithMeshConfig(nil)}, "GM0250 error spec.tracing[0].providers[0].name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(policy)), tt.opts...)
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+string(d.Severity)+" "+d.Field)
			}
			if strings.Join(got, "\n") != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestReadMeshConfig: the mesh config file is checked when it is read.
func TestReadMeshConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"providers", telemetryMesh, ""},
		{"empty", "", ""},
		{"unknown field", "extensionProvider: []", "unknown field"},
		{"duplicate provider", "extensionProviders: [{name: a, envoyFileAccessLog: {path: /a}}, {name: a, envoyFileAccessLog: {path: /b}}]", "defined twice"},
		{"envoy is built in", "extensionProviders: [{name: envoy, envoyFileAccessLog: {path: /a}}]", "built-in"},
		{"otel without port", "extensionProviders: [{name: a, opentelemetry: {service: x}}]", "needs a service and a port"},
		{"otel over http", "extensionProviders: [{name: a, opentelemetry: {service: x, port: 4318, http: {path: /v1/traces}}}]", "not supported"},
		{"unknown default tracer", "defaultProviders: {tracing: [a]}", "defaultProviders.tracing[0]"},
		{"default access log envoy", "defaultProviders: {accessLogging: [envoy]}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadMeshConfig([]byte(tt.yaml))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

package compiler

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// ReadMeshConfig decodes an Istio MeshConfig document (the `mesh` key of
// istiod's ConfigMap, or the chart's meshConfig value) in YAML or JSON.
// Unknown fields are errors, as istiod reports them. gitmesh reads
// extensionProviders, defaultProviders, accessLogFile,
// accessLogEncoding, accessLogFormat and defaultConfig.tracing.sampling
// (docs/observability.md); other fields are accepted and ignored.
func ReadMeshConfig(data []byte) (*meshconfig.MeshConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("reading mesh config: %w", err)
	}
	mc := &meshconfig.MeshConfig{}
	if string(js) == "null" {
		return mc, nil
	}
	if err := protojson.Unmarshal(js, mc); err != nil {
		return nil, fmt.Errorf("reading mesh config: %w", err)
	}
	seen := map[string]bool{}
	for i, ep := range mc.GetExtensionProviders() {
		switch {
		case ep.GetName() == "":
			return nil, fmt.Errorf("reading mesh config: extensionProviders[%d].name is empty", i)
		case seen[ep.GetName()]:
			return nil, fmt.Errorf("reading mesh config: extensionProviders[%d]: provider %q is defined twice", i, ep.GetName())
		case ep.GetName() == envoyProviderName:
			return nil, fmt.Errorf("reading mesh config: extensionProviders[%d]: %q is the built-in provider's name", i, ep.GetName())
		}
		seen[ep.GetName()] = true
		if otel := ep.GetOpentelemetry(); otel != nil {
			if otel.GetService() == "" || otel.GetPort() == 0 || otel.GetPort() > 65535 {
				return nil, fmt.Errorf("reading mesh config: extensionProviders[%d] (%s): opentelemetry needs a service and a port", i, ep.GetName())
			}
			if otel.GetHttp() != nil {
				return nil, fmt.Errorf("reading mesh config: extensionProviders[%d] (%s): opentelemetry.http is not supported; the proxies export OTLP over gRPC", i, ep.GetName())
			}
		}
		if fl := ep.GetEnvoyFileAccessLog(); fl != nil && fl.GetPath() == "" {
			return nil, fmt.Errorf("reading mesh config: extensionProviders[%d] (%s): envoyFileAccessLog.path is empty", i, ep.GetName())
		}
	}
	dp := mc.GetDefaultProviders()
	for i, n := range dp.GetTracing() {
		if ep, ok := byName(mc, n); !ok || ep.GetOpentelemetry() == nil {
			return nil, fmt.Errorf("reading mesh config: defaultProviders.tracing[%d]: %q is not an opentelemetry provider of extensionProviders", i, n)
		}
	}
	for i, n := range dp.GetAccessLogging() {
		if ep, ok := byName(mc, n); n != envoyProviderName && (!ok || ep.GetEnvoyFileAccessLog() == nil) {
			return nil, fmt.Errorf("reading mesh config: defaultProviders.accessLogging[%d]: %q is not an envoyFileAccessLog provider of extensionProviders (nor %q)", i, n, envoyProviderName)
		}
	}
	return mc, nil
}

// byName returns the extension provider called name.
func byName(mc *meshconfig.MeshConfig, name string) (*meshconfig.MeshConfig_ExtensionProvider, bool) {
	for _, ep := range mc.GetExtensionProviders() {
		if ep.GetName() == name {
			return ep, true
		}
	}
	return nil, false
}

// WithMeshConfig sets the Istio MeshConfig the Telemetry kind reads: its
// extensionProviders (the providers Telemetry objects name), its
// defaultProviders, and the mesh-wide access log (accessLogFile). If mc
// is nil, there are no providers but the built-in "envoy" access log.
//
// Without this option (`gitmesh validate` and `gitmesh diff`, which do
// not know the controller's mesh config) the provider names Telemetry
// objects use are not checked: each is reported as CodeUnknownTelemetryProvider
// with severity info, and the compiled output has no tracing.
func WithMeshConfig(mc *meshconfig.MeshConfig) Option {
	return func(o *options) { o.mesh, o.meshSet = mc, true }
}

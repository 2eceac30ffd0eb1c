package compiler

import (
	"fmt"
	"sort"
	"strings"

	meshconfig "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// KindTelemetry is telemetry.istio.io's (v1 and v1alpha1).
const KindTelemetry = "Telemetry"

const groupTelemetry = "telemetry.istio.io"

// Telemetry diagnostic codes (docs/diagnostics.md).
const (
	// CodeUnknownTelemetryProvider: a Telemetry names a provider that the
	// mesh config's extensionProviders does not define (and that is not
	// the built-in "envoy" access log).
	CodeUnknownTelemetryProvider = "GM0250"
	// CodeConflictingTelemetry: two Telemetry objects at one scope (two
	// without a selector in one namespace, two with the same selector);
	// the first by name applies.
	CodeConflictingTelemetry = "GM0251"
	// CodeUnsupportedTelemetryProvider: a provider of a kind gitmesh's
	// proxies do not implement (zipkin, datadog, an ALS service...), or
	// one used for the wrong signal (an access log provider in tracing).
	CodeUnsupportedTelemetryProvider = "GM0252"
	// CodeAccessLogFilter: accessLogging[].filter.expression (CEL) is not
	// implemented by gitmesh's proxies.
	CodeAccessLogFilter = "GM0253"
	// CodeUnknownCollector: an opentelemetry provider's service and port
	// are not a service port of the mesh (a Kubernetes Service or a
	// ServiceEntry), so there is no cluster to export spans to.
	CodeUnknownCollector = "GM0254"
	// CodeIneffectiveTelemetry: a Telemetry with a selector in the root
	// namespace, which Istio ignores.
	CodeIneffectiveTelemetry = "GM0255"
)

// envoyProviderName is Istio's built-in access log provider: Envoy's
// file access log on /dev/stdout in the mesh's default format.
const envoyProviderName = "envoy"

// defaultSamplingPercentage is Istio's trace sampling when neither a
// Telemetry nor defaultConfig.tracing.sampling sets one
// (PILOT_TRACE_SAMPLING).
const defaultSamplingPercentage = 1.0

// Telemetry is a decoded telemetry.istio.io Telemetry.
type Telemetry struct {
	Meta
	Spec *telemetry.Telemetry
}

// telemetryScopes are the valid Telemetry objects by scope, with the mesh
// config they name providers of.
type telemetryScopes struct {
	rootNamespace string
	mesh          *meshconfig.MeshConfig
	providers     map[string]*meshconfig.MeshConfig_ExtensionProvider

	root       *Telemetry            // root namespace, no selector
	namespaces map[string]*Telemetry // no selector, by namespace
	workloads  []*Telemetry          // with a selector, sorted by namespace and name
	// collectors are the clusters of the opentelemetry providers, by
	// provider name; a provider whose service is unknown is absent.
	collectors map[string]string
	// unchecked is true when Parse had no mesh config to check provider
	// names against (WithMeshConfig not given).
	unchecked bool
}

// parseTelemetry decodes a Telemetry spec and adds it to p.
func (p *Policy) parseTelemetry(r *reporter, meta Meta, spec any) {
	msg := &telemetry.Telemetry{}
	if !decodeSpec(r, spec, msg) {
		return
	}
	p.Telemetries = append(p.Telemetries, &Telemetry{Meta: meta, Spec: msg})
}

// supportedTelemetryField lists the Telemetry fields gitmesh implements
// ("message.field"). Not listed: metrics (the proxies always export
// Istio's standard metrics), targetRef(s), formatter custom tags and the
// sampling switches Istio added later.
func supportedTelemetryField(name string) bool {
	switch name {
	case "istio.telemetry.v1alpha1.Telemetry.selector",
		"istio.telemetry.v1alpha1.Telemetry.tracing",
		"istio.telemetry.v1alpha1.Telemetry.access_logging",
		"istio.telemetry.v1alpha1.Tracing.match",
		"istio.telemetry.v1alpha1.Tracing.TracingSelector.mode",
		"istio.telemetry.v1alpha1.Tracing.providers",
		"istio.telemetry.v1alpha1.Tracing.random_sampling_percentage",
		"istio.telemetry.v1alpha1.Tracing.disable_span_reporting",
		"istio.telemetry.v1alpha1.Tracing.custom_tags",
		"istio.telemetry.v1alpha1.Tracing.CustomTag.literal",
		"istio.telemetry.v1alpha1.Tracing.CustomTag.header",
		"istio.telemetry.v1alpha1.Tracing.CustomTag.environment",
		"istio.telemetry.v1alpha1.Tracing.Literal.value",
		"istio.telemetry.v1alpha1.Tracing.RequestHeader.name",
		"istio.telemetry.v1alpha1.Tracing.RequestHeader.default_value",
		"istio.telemetry.v1alpha1.Tracing.Environment.name",
		"istio.telemetry.v1alpha1.Tracing.Environment.default_value",
		"istio.telemetry.v1alpha1.ProviderRef.name",
		"istio.telemetry.v1alpha1.AccessLogging.match",
		"istio.telemetry.v1alpha1.AccessLogging.LogSelector.mode",
		"istio.telemetry.v1alpha1.AccessLogging.providers",
		"istio.telemetry.v1alpha1.AccessLogging.disabled",
		"istio.telemetry.v1alpha1.AccessLogging.filter",
		"istio.telemetry.v1alpha1.AccessLogging.Filter.expression":
		return true
	}
	return false
}

// linkTelemetry validates every Telemetry against the mesh config and
// the registry, and indexes the valid ones by scope as Istio does: a
// Telemetry without a selector in the root namespace is mesh-wide, one
// without a selector elsewhere is namespace-wide, one with a selector
// applies to the matching workloads of its namespace.
//
// Without a mesh config (checked false) provider names are reported as
// unchecked (info) rather than unknown.
func (p *Policy) linkTelemetry(mc *meshconfig.MeshConfig, checked bool, diags *Diagnostics) {
	ts := &p.telemetry
	ts.unchecked = !checked
	ts.rootNamespace = p.mtls.rootNamespace
	ts.mesh = mc
	ts.providers = map[string]*meshconfig.MeshConfig_ExtensionProvider{}
	ts.namespaces = map[string]*Telemetry{}
	ts.collectors = map[string]string{}
	for _, ep := range mc.GetExtensionProviders() {
		ts.providers[ep.GetName()] = ep
		if otel := ep.GetOpentelemetry(); otel != nil {
			if c := p.collectorCluster(otel.GetService(), otel.GetPort()); c != "" {
				ts.collectors[ep.GetName()] = c
			}
		}
	}
	sort.SliceStable(p.Telemetries, func(i, j int) bool {
		a, b := p.Telemetries[i], p.Telemetries[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	bySelector := map[string]*Telemetry{}
	for _, t := range p.Telemetries {
		r := newReporter(&t.Meta, KindTelemetry, diags)
		if !p.checkTelemetry(r, t) {
			continue
		}
		sel := t.Spec.GetSelector().GetMatchLabels()
		if len(sel) == 0 {
			first := ts.namespaces[t.Namespace]
			scope := "namespace-wide Telemetry of namespace " + t.Namespace
			if t.Namespace == ts.rootNamespace {
				first, scope = ts.root, "mesh-wide Telemetry (root namespace "+t.Namespace+")"
			}
			if first != nil {
				r.warnf(CodeConflictingTelemetry, "metadata.name", "%s/%s (%s) is already the %s; this one is ignored",
					first.Namespace, first.Name, first.Object.Origin, scope)
				continue
			}
			if t.Namespace == ts.rootNamespace {
				ts.root = t
			} else {
				ts.namespaces[t.Namespace] = t
			}
			continue
		}
		if t.Namespace == ts.rootNamespace {
			r.warnf(CodeIneffectiveTelemetry, "spec.selector",
				"a Telemetry with a selector in the root namespace %s applies to no workload (Istio ignores it); move it to the workloads' namespace, or remove the selector to make it mesh-wide", t.Namespace)
			continue
		}
		key := t.Namespace + "/" + formatSelector(sel)
		if first := bySelector[key]; first != nil {
			r.warnf(CodeConflictingTelemetry, "spec.selector", "Telemetry %s/%s (%s) has the same selector; this one is ignored",
				first.Namespace, first.Name, first.Object.Origin)
			continue
		}
		bySelector[key] = t
		ts.workloads = append(ts.workloads, t)
	}
}

// collectorCluster returns the outbound cluster of a provider's service
// ("host" or Istio's "namespace/host") and port, or "" when the mesh has
// no such service port.
func (p *Policy) collectorCluster(service string, port uint32) string {
	if _, host, ok := strings.Cut(service, "/"); ok {
		service = host
	}
	s := p.byHost[service]
	if s == nil {
		return ""
	}
	for _, pt := range s.ports {
		if pt.number == port {
			return clusterName(port, "", s.fqdn)
		}
	}
	return ""
}

// checkTelemetry validates one Telemetry's selector, providers,
// sampling and access log filters; false when it must not apply.
func (p *Policy) checkTelemetry(r *reporter, t *Telemetry) bool {
	ok := true
	if sel := t.Spec.GetSelector(); sel != nil && !checkSelectorLabels(r, "spec.selector.matchLabels", sel.GetMatchLabels()) {
		ok = false
	}
	for i, tr := range t.Spec.GetTracing() {
		path := fmt.Sprintf("spec.tracing[%d]", i)
		if pct := tr.GetRandomSamplingPercentage(); pct != nil && (pct.GetValue() < 0 || pct.GetValue() > 100) {
			r.errorf(CodeInvalidValue, path+".randomSamplingPercentage", "randomSamplingPercentage %v is outside 0-100", pct.GetValue())
			ok = false
		}
		for j, ref := range tr.GetProviders() {
			fpath := fmt.Sprintf("%s.providers[%d].name", path, j)
			if j > 0 {
				r.warnf(CodeUnsupportedTelemetryProvider, fpath, "only one tracing provider is supported (as in Istio); %q is ignored", ref.GetName())
				continue
			}
			if !p.checkProvider(r, fpath, ref.GetName(), true) {
				ok = false
			}
		}
		for _, k := range sortedKeys(tr.GetCustomTags()) {
			ct := tr.GetCustomTags()[k]
			tpath := path + ".customTags." + k
			switch {
			case ct.GetLiteral() != nil && ct.GetLiteral().GetValue() == "":
				r.errorf(CodeMissingField, tpath+".literal.value", "literal.value is required")
				ok = false
			case ct.GetHeader() != nil && ct.GetHeader().GetName() == "":
				r.errorf(CodeMissingField, tpath+".header.name", "header.name is required")
				ok = false
			case ct.GetEnvironment() != nil && ct.GetEnvironment().GetName() == "":
				r.errorf(CodeMissingField, tpath+".environment.name", "environment.name is required")
				ok = false
			case ct.GetLiteral() == nil && ct.GetHeader() == nil && ct.GetEnvironment() == nil && ct.GetFormatter() == nil:
				r.errorf(CodeMissingField, tpath, "a custom tag needs literal, header or environment")
				ok = false
			}
		}
	}
	for i, al := range t.Spec.GetAccessLogging() {
		path := fmt.Sprintf("spec.accessLogging[%d]", i)
		if e := al.GetFilter().GetExpression(); e != "" {
			r.errorf(CodeAccessLogFilter, path+".filter.expression",
				"access log filter expressions (CEL) are not supported by gitmesh's proxies, which would log every request; remove the filter (%q)", e)
			ok = false
		}
		for j, ref := range al.GetProviders() {
			if !p.checkProvider(r, fmt.Sprintf("%s.providers[%d].name", path, j), ref.GetName(), false) {
				ok = false
			}
		}
	}
	return ok
}

// checkProvider reports a provider name the mesh config does not define,
// or one of a kind the proxies cannot use for tracing (tracing true) or
// access logs.
func (p *Policy) checkProvider(r *reporter, path, name string, tracing bool) bool {
	ts := &p.telemetry
	if name == envoyProviderName && !tracing {
		return true
	}
	ep := ts.providers[name]
	if ep == nil && ts.unchecked {
		r.report(CodeUnknownTelemetryProvider, SeverityInfo, path, "provider %q is not checked: the controller's mesh config is not known here (the controller checks it against --mesh-config)", name)
		return true
	}
	if ep == nil {
		known := make([]string, 0, len(ts.providers)+1)
		for n := range ts.providers {
			known = append(known, n)
		}
		if !tracing {
			known = append(known, envoyProviderName)
		}
		sort.Strings(known)
		r.errorf(CodeUnknownTelemetryProvider, path, "provider %q is not defined in the mesh config's extensionProviders (defined: %s)", name, orNone(known))
		return false
	}
	switch {
	case tracing && ep.GetOpentelemetry() != nil:
		if ts.collectors[name] == "" {
			otel := ep.GetOpentelemetry()
			r.errorf(CodeUnknownCollector, path, "provider %q exports to %s:%d, which is not a service port of the mesh; declare it (a Service or a ServiceEntry)", name, otel.GetService(), otel.GetPort())
			return false
		}
		return true
	case !tracing && ep.GetEnvoyFileAccessLog() != nil:
		return true
	case tracing:
		r.errorf(CodeUnsupportedTelemetryProvider, path, "provider %q is not an opentelemetry provider; gitmesh's proxies export traces with OTLP only", name)
	default:
		r.errorf(CodeUnsupportedTelemetryProvider, path, "provider %q is not an envoyFileAccessLog provider; gitmesh's proxies write access logs to files only", name)
	}
	return false
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// telemetryMode is the side of the traffic a listener serves, for
// Telemetry match.mode.
type telemetryMode int

const (
	modeClient telemetryMode = iota // outbound listeners and gateways
	modeServer                      // inbound listeners
)

func modeMatches(m telemetry.WorkloadMode, mode telemetryMode) bool {
	switch m {
	case telemetry.WorkloadMode_CLIENT:
		return mode == modeClient
	case telemetry.WorkloadMode_SERVER:
		return mode == modeServer
	}
	return true
}

// tracingSettings is the tracing in force for a workload and mode.
type tracingSettings struct {
	provider string  // extension provider name
	cluster  string  // the collector's outbound cluster
	sampling float64 // percent
	tags     map[string]*telemetry.Tracing_CustomTag
}

// accessLogSettings are the access logs in force for a workload and
// mode: the enabled providers, sorted by name.
type accessLogSettings []string

// telemetryFor computes what applies to a workload of namespace ns with
// labels on the mode's listeners: mesh defaults, then the mesh-wide
// Telemetry, then the namespace's, then the workload's, each later level
// overriding the fields it sets (Istio's precedence). tracing is nil when
// no span is reported.
func (ts *telemetryScopes) telemetryFor(ns string, labels map[string]string, mode telemetryMode) (*tracingSettings, accessLogSettings) {
	levels := make([]*Telemetry, 0, 3)
	if ts.root != nil {
		levels = append(levels, ts.root)
	}
	if t := ts.namespaces[ns]; t != nil && ns != ts.rootNamespace {
		levels = append(levels, t)
	}
	for _, t := range ts.workloads {
		if t.Namespace == ns && labelsMatch(t.Spec.GetSelector().GetMatchLabels(), labels) {
			levels = append(levels, t)
			break
		}
	}
	mc := ts.mesh

	// Tracing.
	provider := ""
	if d := mc.GetDefaultProviders().GetTracing(); len(d) > 0 {
		provider = d[0]
	}
	sampling := defaultSamplingPercentage
	if s := mc.GetDefaultConfig().GetTracing().GetSampling(); s > 0 {
		sampling = s
	}
	disabled := false
	tags := map[string]*telemetry.Tracing_CustomTag{}
	for _, t := range levels {
		for _, tr := range t.Spec.GetTracing() {
			if !modeMatches(tr.GetMatch().GetMode(), mode) {
				continue
			}
			if ps := tr.GetProviders(); len(ps) > 0 {
				provider = ps[0].GetName()
			}
			if v := tr.GetRandomSamplingPercentage(); v != nil {
				sampling = v.GetValue()
			}
			if v := tr.GetDisableSpanReporting(); v != nil {
				disabled = v.GetValue()
			}
			for k, v := range tr.GetCustomTags() {
				tags[k] = v
			}
		}
	}
	var tracing *tracingSettings
	if c := ts.collectors[provider]; c != "" && !disabled {
		tracing = &tracingSettings{provider: provider, cluster: c, sampling: sampling, tags: tags}
	}

	// Access logs: per provider, the last level that names it decides.
	enabled := map[string]bool{}
	if mc.GetAccessLogFile() != "" {
		enabled[envoyProviderName] = true
	}
	for _, n := range mc.GetDefaultProviders().GetAccessLogging() {
		enabled[n] = true
	}
	for _, t := range levels {
		for _, al := range t.Spec.GetAccessLogging() {
			if !modeMatches(al.GetMatch().GetMode(), mode) {
				continue
			}
			names := mc.GetDefaultProviders().GetAccessLogging()
			if len(al.GetProviders()) > 0 {
				names = nil
				for _, ref := range al.GetProviders() {
					names = append(names, ref.GetName())
				}
			} else if len(names) == 0 {
				names = []string{envoyProviderName}
			}
			for _, n := range names {
				enabled[n] = !al.GetDisabled().GetValue()
			}
		}
	}
	var logs accessLogSettings
	for _, n := range sortedKeys(enabled) {
		if !enabled[n] {
			continue
		}
		if n == envoyProviderName || ts.providers[n].GetEnvoyFileAccessLog() != nil {
			logs = append(logs, n)
		}
	}
	return tracing, logs
}

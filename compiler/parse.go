package compiler

import (
	"cmp"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// API groups the compiler reads.
const (
	groupNetworking = "networking.istio.io"
	groupSecurity   = "security.istio.io"
	groupGitmesh    = "gitmesh.io"
)

// Kinds the compiler compiles.
const (
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
	KindServiceEntry    = "ServiceEntry"
	KindWorkloadEntry   = "WorkloadEntry"
	KindGateway         = "Gateway"
	KindSidecar         = "Sidecar"
	// KindPeerAuthentication is security.istio.io's (v1 and v1beta1).
	KindPeerAuthentication = "PeerAuthentication"
)

// Parse decodes and validates objs into a Policy.
//
// Every finding is a Diagnostic with the file and line of the offending
// field. The Policy is returned even when there are errors (see Policy);
// callers must not deploy it when Diagnostics.HasErrors. Parse does no I/O
// and does not modify objs.
func Parse(objs []sources.Object, opts ...Option) (*Policy, Diagnostics) {
	o := options{defaultNamespace: DefaultNamespace, trustDomain: DefaultTrustDomain, rootNamespace: DefaultRootNamespace, autoMTLS: true}
	for _, opt := range opts {
		opt(&o)
	}
	p := &Policy{mtls: mtlsSettings{trustDomain: o.trustDomain, rootNamespace: o.rootNamespace, auto: o.autoMTLS}, cache: o.cache}
	if p.cache != nil {
		p.cache.begin()
	}
	diags := problemDiagnostics(o.problems, o.defaultNamespace)
	seen := map[string]*sources.Object{}
	decoded := p.decodeObjects(objs, o.defaultNamespace)
	for i := range objs {
		p.parseObject(objs[i], o.defaultNamespace, seen, &diags, decoded[i])
	}
	p.sortObjects()
	p.linkAuthz(o.security, &diags)
	p.buildRegistry(o, &diags)
	p.link(&diags)
	p.linkTelemetry(o.mesh, o.meshSet, &diags)
	diags.sort()
	return p, diags.dedupe()
}

// parseObject decodes one object and adds it to p. decoded is its
// decoding from decodeObjects, nil when decodeObjects leaves it here.
func (p *Policy) parseObject(obj sources.Object, defaultNS string, seen map[string]*sources.Object, diags *Diagnostics, decoded *objectEntry) {
	ns := obj.Namespace
	if ns == "" {
		ns = defaultNS
	}
	r := &reporter{obj: &obj, kind: obj.Kind, ns: ns, diag: diags}
	group, version := splitAPIVersion(obj.APIVersion)

	switch {
	case group == groupNetworking && isCompiledKind(obj.Kind):
		if version != "v1" && version != "v1beta1" && version != "v1alpha3" {
			r.errorf(CodeUnsupportedAPIVersion, "apiVersion", "apiVersion %q is not supported for %s (use networking.istio.io/v1, v1beta1 or v1alpha3)", obj.APIVersion, obj.Kind)
			return
		}
	case group == groupSecurity && (obj.Kind == KindPeerAuthentication || isAuthzKind(obj.Kind)):
		if version != "v1" && version != "v1beta1" {
			r.errorf(CodeUnsupportedAPIVersion, "apiVersion", "apiVersion %q is not supported for %s (use security.istio.io/v1 or v1beta1)", obj.APIVersion, obj.Kind)
			return
		}
	case group == groupTelemetry && obj.Kind == KindTelemetry:
		if version != "v1" && version != "v1alpha1" {
			r.errorf(CodeUnsupportedAPIVersion, "apiVersion", "apiVersion %q is not supported for %s (use telemetry.istio.io/v1 or v1alpha1)", obj.APIVersion, obj.Kind)
			return
		}
	case group == groupSecurity:
		r.errorf(CodeUnsupportedKind, "kind", "kind %s (%s) is not supported yet; it is not enforced", obj.Kind, obj.APIVersion)
		return
	case obj.APIVersion == v1alpha1.GroupVersion && obj.Kind == v1alpha1.KindRolloutPolicy:
		// decoded below
	case group == groupGitmesh || strings.HasSuffix(group, "."+groupGitmesh):
		r.warnf(CodeNotCompiledYet, "kind", "kind %s (%s) is not compiled yet", obj.Kind, obj.APIVersion)
		p.Pending = append(p.Pending, obj)
		return
	case registry.IsKubernetesKind(obj.APIVersion, obj.Kind):
		p.kubeObjects = append(p.kubeObjects, obj) // read by the registry (see linkRegistry)
		return
	default:
		kind := obj.Kind
		if kind == "" {
			kind = "(none)"
		}
		if isBuiltinKubernetesGroup(group) {
			// A ServiceAccount, ConfigMap or HPA next to the mesh policy is
			// normal (istioctl analyze reads such repositories silently):
			// say it is ignored without calling it a problem.
			r.report(CodeUnknownKind, SeverityInfo, "kind", "kind %s (%s) is a Kubernetes kind gitmesh does not read; ignored", kind, obj.APIVersion)
			return
		}
		r.warnf(CodeUnknownKind, "kind", "kind %s (%s) is not known to gitmesh; ignored", kind, obj.APIVersion)
		return
	}

	if decoded != nil {
		p.addDecoded(obj, ns, seen, r, decoded)
		return
	}
	doc, err := decodeDocument(obj.YAML)
	if err != nil {
		reportYAMLError(r, err)
		return
	}
	if obj.Name == "" {
		r.errorf(CodeMissingField, "metadata.name", "metadata.name is required")
		return
	}
	if !p.firstOf(obj, ns, seen, r) {
		return
	}
	spec, ok := specOf(doc, r)
	if !ok {
		return
	}
	if obj.Kind == v1alpha1.KindRolloutPolicy {
		p.parseRolloutPolicy(r, doc)
		return
	}
	if obj.Kind == KindTelemetry {
		p.parseTelemetry(r, Meta{Namespace: ns, Name: obj.Name, Object: obj}, spec)
		return
	}
	if isAuthzKind(obj.Kind) {
		p.parseAuthz(r, Meta{Namespace: ns, Name: obj.Name, Object: obj}, obj.Kind, spec)
		return
	}
	p.add(Meta{Namespace: ns, Name: obj.Name, Object: obj}, decodeKind(r, obj.Kind, spec))
}

// addDecoded is parseObject's end for an object decodeObjects decoded:
// the same diagnostics in the same order as decoding it here.
func (p *Policy) addDecoded(obj sources.Object, ns string, seen map[string]*sources.Object, r *reporter, e *objectEntry) {
	if e.yamlErr { // reported before the duplicate check, as parseObject does
		*r.diag = append(*r.diag, e.diags...)
		return
	}
	if !p.firstOf(obj, ns, seen, r) {
		return
	}
	*r.diag = append(*r.diag, e.diags...)
	if e.spec != nil {
		p.add(Meta{Namespace: ns, Name: obj.Name, Object: obj}, e.spec)
	}
}

// firstOf reports whether obj is the first of its kind, namespace and
// name, reporting CodeDuplicateObject if not.
func (p *Policy) firstOf(obj sources.Object, ns string, seen map[string]*sources.Object, r *reporter) bool {
	key := obj.Kind + "/" + ns + "/" + obj.Name
	if first, ok := seen[key]; ok {
		r.errorf(CodeDuplicateObject, "metadata.name", "%s %s/%s is already defined at %s", obj.Kind, ns, obj.Name, first.Origin)
		return false
	}
	seen[key] = &obj
	return true
}

// specOf returns doc's spec, reporting unknown top-level fields. ok is
// false when there is none and a top-level field is unknown: most likely a
// misspelled spec, whose fields would only add noise.
func specOf(doc map[string]any, r *reporter) (spec any, ok bool) {
	unknownTop := false
	for _, k := range sortedKeys(doc) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			unknownTop = true
			msg := fmt.Sprintf("unknown field %q at the top of %s", k, r.kind)
			if k != "spec" && editDistance(strings.ToLower(k), "spec") <= 2 {
				msg += ` (did you mean "spec"?)`
			}
			r.errorf(CodeUnknownField, k, "%s", msg)
		}
	}
	spec, ok = doc["spec"]
	return spec, ok || !unknownTop
}

// isSpecKind reports whether decodeKind reads kind.
func isSpecKind(kind string) bool {
	return isCompiledKind(kind) || kind == KindPeerAuthentication
}

// decodeKind decodes spec into the istio.io/api message of kind (one
// isSpecKind accepts); nil when it does not decode.
func decodeKind(r *reporter, kind string, spec any) proto.Message {
	var msg proto.Message
	switch kind {
	case KindVirtualService:
		msg = &networking.VirtualService{}
	case KindDestinationRule:
		msg = &networking.DestinationRule{}
	case KindServiceEntry:
		msg = &networking.ServiceEntry{}
	case KindWorkloadEntry:
		msg = &networking.WorkloadEntry{}
	case KindGateway:
		msg = &networking.Gateway{}
	case KindSidecar:
		msg = &networking.Sidecar{}
	case KindPeerAuthentication:
		msg = &security.PeerAuthentication{}
	default:
		return nil
	}
	if !decodeSpec(r, spec, msg) {
		return nil
	}
	return msg
}

// add appends a decoded spec (from decodeKind; nil adds nothing) to its
// kind's list.
func (p *Policy) add(meta Meta, spec proto.Message) {
	switch x := spec.(type) {
	case *networking.VirtualService:
		p.VirtualServices = append(p.VirtualServices, &VirtualService{Meta: meta, Spec: x})
	case *networking.DestinationRule:
		p.DestinationRules = append(p.DestinationRules, &DestinationRule{Meta: meta, Spec: x})
	case *networking.ServiceEntry:
		p.ServiceEntries = append(p.ServiceEntries, &ServiceEntry{Meta: meta, Spec: x})
	case *networking.WorkloadEntry:
		p.WorkloadEntries = append(p.WorkloadEntries, &WorkloadEntry{Meta: meta, Spec: x})
	case *networking.Gateway:
		p.Gateways = append(p.Gateways, &Gateway{Meta: meta, Spec: x})
	case *networking.Sidecar:
		p.Sidecars = append(p.Sidecars, &Sidecar{Meta: meta, Spec: x})
	case *security.PeerAuthentication:
		p.PeerAuthentications = append(p.PeerAuthentications, &PeerAuthentication{Meta: meta, Spec: x})
	}
}

// problemDiagnostics turns the problems sources found in documents into
// diagnostics: a missing apiVersion, kind or metadata.name is
// CodeMissingField; bad YAML, a document that is not a mapping and a
// duplicate key are CodeInvalidYAML. All are errors.
func problemDiagnostics(problems []sources.Problem, defaultNS string) Diagnostics {
	out := Diagnostics{}
	for _, pr := range problems {
		code, msg := CodeInvalidYAML, pr.Message
		switch pr.Reason {
		case sources.ReasonMissingField:
			code = CodeMissingField
		case sources.ReasonInvalidYAML:
			msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
		}
		d := Diagnostic{
			Code: code, Severity: SeverityError, Kind: pr.Kind, Name: pr.Name,
			Field: pr.Field, Origin: pr.Origin, Message: msg,
		}
		if d.Name == "" {
			d.Kind = "" // "Service x/" would read as a name; the message says what is missing
		} else {
			d.Namespace = cmp.Or(pr.Namespace, defaultNS)
		}
		out = append(out, d)
	}
	return out
}

// with returns a reporter for the same object stored elsewhere.
func (r *reporter) with(obj *sources.Object) *reporter {
	return &reporter{obj: obj, kind: r.kind, ns: r.ns, diag: r.diag}
}

func isCompiledKind(kind string) bool {
	switch kind {
	case KindVirtualService, KindDestinationRule, KindServiceEntry, KindWorkloadEntry, KindGateway, KindSidecar:
		return true
	}
	return false
}

// splitAPIVersion splits "group/version" ("v1" has the core group "").
func splitAPIVersion(apiVersion string) (group, version string) {
	if g, v, ok := strings.Cut(apiVersion, "/"); ok {
		return g, v
	}
	return "", apiVersion
}

// reportYAMLError reports a document that does not decode, at the line the
// YAML parser names when it names one.
func reportYAMLError(r *reporter, err error) {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	line := 0
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+len("line "):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if n, convErr := strconv.Atoi(rest[:j]); convErr == nil && n > 0 {
			line = n
			msg = strings.TrimPrefix(strings.TrimSpace(rest[j:]), ":")
		}
	}
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml:"))
	d := Diagnostic{
		Code: CodeInvalidYAML, Severity: SeverityError, Kind: r.kind, Namespace: r.ns, Name: r.obj.Name,
		Origin: r.obj.Origin, Message: "invalid YAML: " + msg,
	}
	if line > 0 && d.Origin.Line > 0 {
		d.Origin.Line += line - 1
	}
	*r.diag = append(*r.diag, d)
}

// sortObjects orders each kind by namespace and name, so that the input
// order of files never changes the output.
func (p *Policy) sortObjects() {
	less := func(a, b *Meta) bool {
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	}
	sort.Slice(p.VirtualServices, func(i, j int) bool { return less(&p.VirtualServices[i].Meta, &p.VirtualServices[j].Meta) })
	sort.Slice(p.DestinationRules, func(i, j int) bool { return less(&p.DestinationRules[i].Meta, &p.DestinationRules[j].Meta) })
	sort.Slice(p.ServiceEntries, func(i, j int) bool { return less(&p.ServiceEntries[i].Meta, &p.ServiceEntries[j].Meta) })
	sort.Slice(p.WorkloadEntries, func(i, j int) bool { return less(&p.WorkloadEntries[i].Meta, &p.WorkloadEntries[j].Meta) })
	sort.Slice(p.Gateways, func(i, j int) bool { return less(&p.Gateways[i].Meta, &p.Gateways[j].Meta) })
	sort.Slice(p.Sidecars, func(i, j int) bool { return less(&p.Sidecars[i].Meta, &p.Sidecars[j].Meta) })
	sort.Slice(p.PeerAuthentications, func(i, j int) bool {
		return less(&p.PeerAuthentications[i].Meta, &p.PeerAuthentications[j].Meta)
	})
}

// isBuiltinKubernetesGroup reports whether group is an API group built into
// Kubernetes ("" is the core group): apps, batch, rbac.authorization.k8s.io,
// policy, autoscaling, networking.k8s.io and the other *.k8s.io groups.
func isBuiltinKubernetesGroup(group string) bool {
	switch group {
	case "", "apps", "batch", "policy", "autoscaling", "extensions":
		return true
	}
	return strings.HasSuffix(group, ".k8s.io")
}

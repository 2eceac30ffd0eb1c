package compiler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gitmesh/gitmesh/sources"
)

// Severity is how serious a Diagnostic is. Only SeverityError blocks a
// deploy.
type Severity string

// Severities, from most to least serious.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// Diagnostic codes. They are stable: tools and users match on them, so a
// code is never reused for another meaning. docs/diagnostics.md documents
// each one with an example and a fix.
const (
	// CodeInvalidYAML: the document is not valid YAML or not an object.
	CodeInvalidYAML = "GM0101"
	// CodeInvalidValue: a field has the wrong type or an invalid value for
	// its schema (a string where a number belongs, an unknown enum name).
	CodeInvalidValue = "GM0102"
	// CodeUnknownField: a field that the kind's schema does not have.
	CodeUnknownField = "GM0103"
	// CodeUnsupportedField: a field Istio knows but gitmesh does not
	// implement yet.
	CodeUnsupportedField = "GM0104"
	// CodeUnknownKind: a kind gitmesh does not know; it is ignored.
	CodeUnknownKind = "GM0105"
	// CodeNotCompiledYet: a gitmesh.io kind that is kept but not compiled yet.
	CodeNotCompiledYet = "GM0106"
	// CodeUnsupportedAPIVersion: a known kind with an apiVersion gitmesh
	// does not accept.
	CodeUnsupportedAPIVersion = "GM0107"
	// CodeUnsupportedKind: a known Istio kind gitmesh does not implement
	// yet and must not ignore (security.istio.io kinds: ignoring them
	// would silently weaken security).
	CodeUnsupportedKind = "GM0108"
	// CodeInvalidRolloutPolicy: a RolloutPolicy field fails
	// v1alpha1.RolloutPolicy.Validate.
	CodeInvalidRolloutPolicy = "GM0120"
	// CodeConflictingRolloutPolicies: more than one RolloutPolicy in a
	// revision.
	CodeConflictingRolloutPolicies = "GM0121"
	// CodeMissingField: a required field is missing or empty.
	CodeMissingField = "GM0110"
	// CodeInvalidPort: a port number outside 1-65535, or a port listed twice.
	CodeInvalidPort = "GM0111"
	// CodeInvalidHost: a host name or endpoint address that is not valid.
	CodeInvalidHost = "GM0112"
	// CodeUnsupportedValue: a value gitmesh does not implement yet (a
	// gateway other than mesh, a wildcard host, a TCP port, ...).
	CodeUnsupportedValue = "GM0113"
	// CodeConflictingFields: fields that cannot be set together.
	CodeConflictingFields = "GM0114"
	// CodeDuplicateEntry: a name listed twice inside one object (a subset).
	CodeDuplicateEntry = "GM0115"
	// CodeInvalidRegex: a regular expression that is not valid RE2
	// (istioctl IST0122 InvalidRegexp).
	CodeInvalidRegex = "GM0116"

	// CodeUnknownSubset: a route destination names a subset that no
	// DestinationRule defines for its host.
	CodeUnknownSubset = "GM0201"
	// CodeUnknownHost: a route destination host that no ServiceEntry declares.
	CodeUnknownHost = "GM0202"
	// CodeBadWeights: a negative route weight or all weights 0 (errors),
	// or weights that do not sum to 100 (a warning: they are relative).
	CodeBadWeights = "GM0203"
	// CodeUnknownPort: a destination port the destination service does not
	// expose, or a missing port where one is needed.
	CodeUnknownPort = "GM0204"
	// CodeDuplicateObject: the same kind, namespace and name twice.
	CodeDuplicateObject = "GM0205"
	// CodeDuplicateHost: a host declared by more than one ServiceEntry.
	CodeDuplicateHost = "GM0206"
	// CodeConflictingVirtualServices: more than one VirtualService for a host.
	CodeConflictingVirtualServices = "GM0207"
	// CodeConflictingDestinationRules: more than one DestinationRule for a host.
	CodeConflictingDestinationRules = "GM0208"
	// CodeUnusedVirtualServiceHost: a VirtualService host that matches no
	// service, so its rules have no effect.
	CodeUnusedVirtualServiceHost = "GM0209"
	// CodeUnusedDestinationRule: a DestinationRule whose host matches no
	// service.
	CodeUnusedDestinationRule = "GM0210"
	// CodeUnselectedWorkloadEntry: a WorkloadEntry that no ServiceEntry
	// selects, so it receives no traffic.
	CodeUnselectedWorkloadEntry = "GM0211"
	// CodeUnknownGateway: a VirtualService (or match) names a Gateway that
	// is not defined (istioctl IST0101 ReferencedResourceNotFound).
	CodeUnknownGateway = "GM0212"
	// CodeUnknownDelegate: a route delegates to a VirtualService that is
	// not defined, or not exported to the root's namespace (IST0101).
	CodeUnknownDelegate = "GM0213"
	// CodeConflictingSidecars: two Sidecars apply to the same workloads
	// (istioctl IST0110/IST0111).
	CodeConflictingSidecars = "GM0214"

	// CodeUnreachableRule: a VirtualService rule that is never used
	// because earlier rules match every request it would (istioctl
	// IST0130 VirtualServiceUnreachableRule).
	CodeUnreachableRule = "GM0301"
	// CodeIneffectiveMatch: a match an earlier match already covers
	// (istioctl IST0131 VirtualServiceIneffectiveMatch).
	CodeIneffectiveMatch = "GM0302"
	// CodeHostNotInGateway: a Gateway a VirtualService binds to whose
	// servers accept none of its hosts (istioctl IST0132
	// VirtualServiceHostNotFoundInGateway).
	CodeHostNotInGateway = "GM0303"
	// CodeConflictingGateways: two Gateways selecting the same proxies
	// list the identical host on the same port (istioctl IST0145
	// ConflictingGateways).
	CodeConflictingGateways = "GM0304"
	// CodeDelegateConflict: a delegate route whose match conflicts with
	// the match of the route delegating to it; it is left out.
	CodeDelegateConflict = "GM0305"
	// CodeSharedTCPPort: a TCP port number that more than one service
	// declares; sidecars send it to the first.
	CodeSharedTCPPort = "GM0306"
	// CodeGatewayPortProtocol: a Gateway server on a port that another
	// Gateway selecting the same proxies serves with the other kind of
	// protocol (plain HTTP against HTTPS); it is skipped.
	CodeGatewayPortProtocol = "GM0307"
)

// Diagnostic is a coded finding about an Object.
type Diagnostic struct {
	// Code is stable, GM0101-style (see the Code constants).
	Code string `json:"code"`
	// Severity is error, warning or info.
	Severity Severity `json:"severity"`
	// Kind, Namespace and Name identify the object ("" when the document
	// could not be read far enough to know).
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Field is the dotted path of the offending field, rooted at the
	// document ("spec.http[0].route[0].destination.subset"), or "" for the
	// whole object.
	Field string `json:"field,omitempty"`
	// Origin is the file and line of the offending field.
	Origin sources.Origin `json:"origin"`
	// Message says what is wrong, in one line.
	Message string `json:"message"`
}

// String returns the diagnostic as one line:
//
//	policy/reviews.yaml:12: GM0201 error: VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset "v3" is not defined ...
func (d Diagnostic) String() string {
	var b strings.Builder
	if o := d.Origin.String(); o != "" {
		b.WriteString(o)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s %s: ", d.Code, d.Severity)
	if d.Kind != "" {
		b.WriteString(d.Kind)
		b.WriteString(" ")
		if d.Namespace != "" {
			b.WriteString(d.Namespace)
			b.WriteString("/")
		}
		b.WriteString(d.Name)
		b.WriteString(": ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of findings, sorted by file, line and code.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic has SeverityError.
func (d Diagnostics) HasErrors() bool {
	for _, x := range d {
		if x.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns the diagnostics with SeverityError.
func (d Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, x := range d {
		if x.Severity == SeverityError {
			out = append(out, x)
		}
	}
	return out
}

// String returns one diagnostic per line.
func (d Diagnostics) String() string {
	var b strings.Builder
	for _, x := range d {
		b.WriteString(x.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// sort orders the diagnostics by file, line and code, then by the rest so
// that the order never depends on map iteration.
func (d Diagnostics) sort() {
	sort.SliceStable(d, func(i, j int) bool {
		a, b := d[i], d[j]
		switch {
		case a.Origin.File != b.Origin.File:
			return a.Origin.File < b.Origin.File
		case a.Origin.Line != b.Origin.Line:
			return a.Origin.Line < b.Origin.Line
		case a.Code != b.Code:
			return a.Code < b.Code
		case a.Kind != b.Kind:
			return a.Kind < b.Kind
		case a.Namespace != b.Namespace:
			return a.Namespace < b.Namespace
		case a.Name != b.Name:
			return a.Name < b.Name
		case a.Field != b.Field:
			return a.Field < b.Field
		}
		return a.Message < b.Message
	})
}

// dedupe drops repeated diagnostics from a sorted list (a delegate's
// route is checked once per root that uses it).
func (d Diagnostics) dedupe() Diagnostics {
	out := d[:0]
	for i, x := range d {
		if i > 0 && x == d[i-1] {
			continue
		}
		out = append(out, x)
	}
	return out
}

// reporter collects diagnostics about one object.
type reporter struct {
	obj  *sources.Object
	kind string
	ns   string
	diag *Diagnostics
}

// report adds a diagnostic about field (a dotted path, "" for the object).
func (r *reporter) report(code string, sev Severity, field, format string, args ...any) {
	origin := r.obj.Origin
	if field != "" {
		origin = r.obj.At(field)
	}
	*r.diag = append(*r.diag, Diagnostic{
		Code: code, Severity: sev, Kind: r.kind, Namespace: r.ns, Name: r.obj.Name,
		Field: field, Origin: origin, Message: fmt.Sprintf(format, args...),
	})
}

func (r *reporter) errorf(code, field, format string, args ...any) {
	r.report(code, SeverityError, field, format, args...)
}

func (r *reporter) warnf(code, field, format string, args ...any) {
	r.report(code, SeverityWarning, field, format, args...)
}

package compiler

import (
	"sort"
	"strconv"

	security "istio.io/api/security/v1beta1"

	"github.com/gitmesh/gitmesh/ca"
)

// This file reads PeerAuthentication as Istio does (pilot/pkg/model
// authentication.go, pilot/pkg/security/authn ComposePeerAuthentication,
// pkg/config/validation ValidatePeerAuthentication): the policy without a
// selector in the root namespace is mesh-wide, one without a selector in
// another namespace is that namespace's, one with a selector applies to
// the workloads of its namespace whose labels it matches. A workload's
// mode on a port is the workload policy's portLevelMtls for that port,
// else the workload policy's mode, else the namespace's, else the mesh's,
// else PERMISSIVE; UNSET inherits from the level above.

// Diagnostic codes of PeerAuthentication (docs/diagnostics.md).
const (
	// CodeConflictingPeerAuthentications: more than one mesh-wide or
	// namespace-wide PeerAuthentication in one namespace, or two with the
	// same selector; the first by name is used (Istio uses the oldest).
	CodeConflictingPeerAuthentications = "GM0230"
	// CodeIneffectivePeerAuthentication: a PeerAuthentication with a
	// selector in the root namespace, which Istio applies to no workload.
	CodeIneffectivePeerAuthentication = "GM0231"
)

// PeerAuthentication is a decoded security.istio.io PeerAuthentication
// (v1 and v1beta1 share the schema).
type PeerAuthentication struct {
	Meta
	// Spec is the decoded spec, exactly as istio.io/api reads it.
	Spec *security.PeerAuthentication
}

// mtlsMode is a PeerAuthentication mode; mtlsUnset inherits.
type mtlsMode int

// PeerAuthentication modes, as Istio's MutualTLSMode.
const (
	mtlsUnset mtlsMode = iota
	mtlsDisable
	mtlsPermissive
	mtlsStrict
)

// String returns the mode as PeerAuthentication writes it.
func (m mtlsMode) String() string {
	switch m {
	case mtlsDisable:
		return "DISABLE"
	case mtlsPermissive:
		return "PERMISSIVE"
	case mtlsStrict:
		return "STRICT"
	}
	return "UNSET"
}

func modeOf(m *security.PeerAuthentication_MutualTLS) mtlsMode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return mtlsDisable
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return mtlsPermissive
	case security.PeerAuthentication_MutualTLS_STRICT:
		return mtlsStrict
	}
	return mtlsUnset
}

// peerAuthn is a valid PeerAuthentication.
type peerAuthn struct {
	obj      *PeerAuthentication
	selector map[string]string   // nil for a mesh-wide or namespace-wide policy
	mode     mtlsMode            // mtlsUnset inherits
	ports    map[uint32]mtlsMode // portLevelMtls; mtlsUnset inherits the workload mode
}

// mtlsSettings are the mTLS settings of a Policy: Parse's options and the
// valid PeerAuthentications.
type mtlsSettings struct {
	trustDomain   string
	rootNamespace string
	auto          bool // auto mTLS (WithAutoMTLS)

	mesh       *peerAuthn            // the mesh-wide policy; nil when none
	namespaces map[string]*peerAuthn // namespace-wide policies by namespace
	workloads  []*peerAuthn          // policies with a selector outside the root namespace, sorted by namespace and name
}

// linkPeerAuthentications validates every PeerAuthentication and indexes
// the valid ones. Objects are sorted by namespace and name, and the first
// of two policies at one level wins: Istio keeps the oldest, which a
// revision in Git cannot tell, so the name decides.
func (p *Policy) linkPeerAuthentications(diags *Diagnostics) {
	m := &p.mtls
	m.namespaces = map[string]*peerAuthn{}
	bySelector := map[string]*peerAuthn{}
	for _, pa := range p.PeerAuthentications {
		r := newReporter(&pa.Meta, KindPeerAuthentication, diags)
		x, ok := checkPeerAuthentication(r, pa)
		if !ok {
			continue
		}
		switch {
		case x.selector == nil:
			first := m.namespaces[pa.Namespace]
			if pa.Namespace == m.rootNamespace {
				first = m.mesh
			}
			if first != nil {
				scope := "namespace-wide PeerAuthentication of namespace " + pa.Namespace
				if pa.Namespace == m.rootNamespace {
					scope = "mesh-wide PeerAuthentication (root namespace " + pa.Namespace + ")"
				}
				r.warnf(CodeConflictingPeerAuthentications, "metadata.name", "%s/%s (%s) is already the %s; this one is ignored",
					first.obj.Namespace, first.obj.Name, first.obj.Object.Origin, scope)
				continue
			}
			if pa.Namespace == m.rootNamespace {
				m.mesh = x
			} else {
				m.namespaces[pa.Namespace] = x
			}
		case pa.Namespace == m.rootNamespace:
			r.warnf(CodeIneffectivePeerAuthentication, "spec.selector",
				"a PeerAuthentication with a selector in the root namespace %s applies to no workload (Istio ignores it); move it to the workloads' namespace, or remove the selector to make it mesh-wide", pa.Namespace)
		default:
			key := pa.Namespace + "/" + formatSelector(x.selector)
			if first := bySelector[key]; first != nil {
				r.warnf(CodeConflictingPeerAuthentications, "spec.selector", "PeerAuthentication %s/%s (%s) has the same selector; this one is ignored",
					first.obj.Namespace, first.obj.Name, first.obj.Object.Origin)
				continue
			}
			bySelector[key] = x
			m.workloads = append(m.workloads, x)
		}
	}
}

// checkPeerAuthentication validates a PeerAuthentication as Istio does and
// returns it normalized.
func checkPeerAuthentication(r *reporter, pa *PeerAuthentication) (*peerAuthn, bool) {
	spec := pa.Spec
	ok := true
	x := &peerAuthn{obj: pa, mode: modeOf(spec.GetMtls())}
	if sel := spec.GetSelector(); sel != nil {
		if len(sel.GetMatchLabels()) == 0 {
			r.warnf(CodeMissingField, "spec.selector", "selector without matchLabels selects every workload of the namespace, as no selector does")
		} else {
			ok = checkSelectorLabels(r, "spec.selector.matchLabels", sel.GetMatchLabels())
			x.selector = copyLabels(sel.GetMatchLabels())
		}
	}
	if len(spec.GetPortLevelMtls()) > 0 && x.selector == nil {
		r.errorf(CodeConflictingFields, "spec.portLevelMtls", "portLevelMtls needs a selector: a mesh-wide or namespace-wide PeerAuthentication cannot set port-level mTLS")
		ok = false
	}
	ports := make([]uint32, 0, len(spec.GetPortLevelMtls()))
	for n := range spec.GetPortLevelMtls() {
		ports = append(ports, n)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, n := range ports {
		if !checkPort(r, "spec.portLevelMtls."+strconv.FormatUint(uint64(n), 10), n) {
			ok = false
			continue
		}
		if x.ports == nil {
			x.ports = map[uint32]mtlsMode{}
		}
		x.ports[n] = modeOf(spec.GetPortLevelMtls()[n])
	}
	return x, ok
}

// namespaceMode is the mode of namespace ns without workload policies:
// the namespace policy's, else the mesh policy's, else PERMISSIVE (Istio's
// GetNamespaceMutualTLSMode with the PERMISSIVE fallback). It is what
// clients assume of a service's endpoints for auto mTLS.
func (m *mtlsSettings) namespaceMode(ns string) mtlsMode {
	mode := mtlsPermissive
	if m.mesh != nil && m.mesh.mode != mtlsUnset {
		mode = m.mesh.mode
	}
	if x := m.namespaces[ns]; x != nil && x.mode != mtlsUnset {
		mode = x.mode
	}
	return mode
}

// workloadPolicy is the first policy with a selector in namespace ns that
// matches labels; nil when none.
func (m *mtlsSettings) workloadPolicy(ns string, labels map[string]string) *peerAuthn {
	for _, x := range m.workloads {
		if x.obj.Namespace == ns && labelsMatch(x.selector, labels) {
			return x
		}
	}
	return nil
}

// modeFor is the mode of a workload of namespace ns with labels on its
// port (the workload's own port: a container or target port; 0 for none).
func (m *mtlsSettings) modeFor(ns string, labels map[string]string, port uint32) mtlsMode {
	mode := m.namespaceMode(ns)
	x := m.workloadPolicy(ns, labels)
	if x == nil {
		return mode
	}
	if x.mode != mtlsUnset {
		mode = x.mode
	}
	if pm, ok := x.ports[port]; ok && pm != mtlsUnset {
		mode = pm
	}
	return mode
}

// spiffeID is the SPIFFE id of service account sa in namespace ns.
func (m *mtlsSettings) spiffeID(ns, sa string) string {
	return ca.Identity{TrustDomain: m.trustDomain, Namespace: ns, ServiceAccount: sa}.String()
}

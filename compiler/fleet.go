package compiler

import (
	"cmp"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// FleetInputs returns the workloads of fleet that Compile reads, in
// fleet's order: the sidecars that become endpoints of a service (a
// ServiceEntry's workloadSelector picks them: see serviceEndpoints) and
// the capturing sidecars of a namespace that holds Kubernetes Services
// (they mark their pods' endpoints as meshed: see bindCapturedPods).
// Every other workload leaves every class's output unchanged, so
// Compile(class, fleet) and Compile(class, p.FleetInputs(fleet)) return
// the same resources, and a caller that recompiles when the fleet changes
// needs to do so only when FleetInputs changes. In the common case of
// clients that select no service (a fleet of proxies connecting to a
// static mesh), it is empty however many connect.
func (p *Policy) FleetInputs(fleet []nodemeta.Workload) []nodemeta.Workload {
	if p == nil || len(fleet) == 0 {
		return nil
	}
	selecting := map[string][]*service{} // by namespace: services with a selector over the fleet
	kubeNS := map[string]bool{}          // namespaces with Kubernetes Services
	for _, s := range p.services {
		if s.selector != nil && !s.fromCluster() {
			selecting[s.namespace] = append(selecting[s.namespace], s)
		}
		if s.kube != nil {
			kubeNS[s.namespace] = true
		}
	}
	var out []nodemeta.Workload
	for _, w := range fleet {
		if (w.Role != "" && w.Role != nodemeta.RoleSidecar) || w.Generator != "" {
			continue
		}
		ns := cmp.Or(w.Namespace, nodemeta.DefaultNamespace)
		if (w.Interception == nodemeta.InterceptionRedirect && kubeNS[ns]) || (w.Inbound != "" && selects(selecting[ns], w.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// selects reports whether one of services' selectors matches labels.
func selects(services []*service, labels map[string]string) bool {
	for _, s := range services {
		if labelsMatch(s.selector, labels) {
			return true
		}
	}
	return false
}

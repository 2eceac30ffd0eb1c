package kube

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/gitmesh/gitmesh/registry"
)

// Snapshot is the set of API objects one registry is built from, as the
// informers' caches hold them at one moment.
type Snapshot struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
}

// Build converts a Snapshot into a registry, as Istio's Kubernetes
// registry reads the same objects:
//
//   - every Service is a host (registry.ServiceFromKubernetes: name,
//     ports with their protocol, selector, exportTo annotation), except
//     type ExternalName, which has no endpoints to route to;
//   - its endpoints come from the EndpointSlices labelled
//     kubernetes.io/service-name with its name in its namespace: one
//     Endpoint per address, its port numbers by service port name, Ready
//     from conditions.ready (unset counts as ready, as the API documents),
//     and the labels and service account of the Pod its targetRef names;
//   - every Pod with an IP is a Workload (labels, named container ports),
//     which resolves named targetPorts.
//
// Endpoints of FQDN slices are left out; an address listed by two slices
// (as during a slice hand-over) is kept once, ready if either says so.
// Build does no I/O and does not keep the objects.
func Build(s Snapshot) *registry.Static {
	pods := map[string]*corev1.Pod{}
	var workloads []*registry.Workload
	byNS := map[string][]*registry.Workload{} // what ResolveTargetPorts scans
	for _, p := range s.Pods {
		pods[p.Namespace+"/"+p.Name] = p
		if p.Status.PodIP == "" {
			continue
		}
		w := registry.WorkloadFromPodTemplate("Pod", p.Name, p.Namespace, p.Labels, &p.Spec)
		w.Address = p.Status.PodIP
		workloads = append(workloads, w)
		byNS[p.Namespace] = append(byNS[p.Namespace], w)
	}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range s.EndpointSlices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" || es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		bySvc[es.Namespace+"/"+name] = append(bySvc[es.Namespace+"/"+name], es)
	}
	var services []*registry.Service
	for _, svc := range s.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		rs := registry.ServiceFromKubernetes(svc, svc.Namespace)
		registry.ResolveTargetPorts(rs, byNS[svc.Namespace])
		rs.Endpoints = endpoints(bySvc[svc.Namespace+"/"+svc.Name], pods)
		services = append(services, rs)
	}
	return registry.NewStatic(services, workloads)
}

// endpoints flattens a Service's EndpointSlices into registry endpoints,
// sorted by address.
func endpoints(ess []*discoveryv1.EndpointSlice, pods map[string]*corev1.Pod) []registry.Endpoint {
	var out []registry.Endpoint
	at := map[string]int{} // address -> index in out
	for _, es := range ess {
		ports := map[string]uint32{}
		for _, p := range es.Ports {
			if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports[name] = uint32(*p.Port)
		}
		for _, ep := range es.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			var labels map[string]string
			workload, sa := "", ""
			if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
				workload = ref.Name
				ns := ref.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				if pod := pods[ns+"/"+ref.Name]; pod != nil {
					sa = registry.ServiceAccount(&pod.Spec)
					if len(pod.Labels) > 0 {
						labels = maps.Clone(pod.Labels)
					}
				}
			}
			for _, addr := range ep.Addresses {
				if i, dup := at[addr]; dup {
					out[i].Ready = out[i].Ready || ready
					continue
				}
				at[addr] = len(out)
				out = append(out, registry.Endpoint{Address: addr, Ports: ports, Labels: labels, Ready: ready, Workload: workload, ServiceAccount: sa})
			}
		}
	}
	slices.SortFunc(out, func(a, b registry.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// Hash returns a content hash of reg: equal registries hash equally, so a
// rebuild after an informer resync (or a Pod status change nothing reads)
// is recognised as no change.
func Hash(reg registry.Registry) string {
	h := sha256.New()
	enc := json.NewEncoder(h) // maps encode with sorted keys
	for _, s := range reg.Services() {
		c := *s
		c.Object = nil
		_ = enc.Encode(&c)
	}
	h.Write([]byte{0})
	for _, w := range reg.Workloads() {
		c := *w
		c.Object = nil
		_ = enc.Encode(&c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

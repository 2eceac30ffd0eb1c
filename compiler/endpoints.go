package compiler

import (
	"cmp"
	"slices"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
)

// serviceEndpoints returns every instance of s: its inline endpoints, the
// WorkloadEntries its workloadSelector picks, and the fleet's sidecars in
// its namespace whose labels match the selector (at their inbound
// address). A Service the API server fed (Kubernetes mode) takes its
// endpoints from its EndpointSlices only: its pods' sidecars are those
// endpoints already, and counting them again would double their weight.
// A DNS service without endpoints resolves its own host.
func (b *builder) serviceEndpoints(s *service) []endpoint {
	eps := append([]endpoint(nil), s.endpoints...)
	if s.kube != nil {
		b.bindCapturedPods(s, eps)
	}
	eps = append(eps, s.selected...)
	if s.selector != nil && !s.fromCluster() {
		eps = append(eps, b.fleetEndpoints(s)...)
	}
	if len(eps) == 0 && s.resolution == networking.ServiceEntry_DNS {
		eps = append(eps, endpoint{address: s.fqdn, weight: 1, workload: s.entry.Name, ns: s.namespace})
	}
	return eps
}

// fromCluster reports whether s is a Kubernetes Service read from the API
// server (not from Git), whose EndpointSlices list its instances.
func (s *service) fromCluster() bool { return s.kube != nil && s.kube.Object == nil }

// fleetEndpoints returns the connected sidecars s selects.
func (b *builder) fleetEndpoints(s *service) []endpoint {
	var out []endpoint
	for _, w := range b.fleet {
		if (w.Role != "" && w.Role != nodemeta.RoleSidecar) || w.Generator != "" || w.Inbound == "" {
			continue
		}
		ns := w.Namespace
		if ns == "" {
			ns = nodemeta.DefaultNamespace
		}
		if ns != s.namespace || !labelsMatch(s.selector, w.Labels) {
			continue
		}
		hp, err := splitIPPort(w.Inbound)
		if err != nil {
			// The proxy only takes IP endpoints. Such a node cannot serve
			// the service; nodemeta.FromNode should reject it earlier.
			continue
		}
		ep := endpoint{
			address: hp.Host, port: hp.Port, labels: copyLabels(w.Labels),
			weight: 1, workload: w.ID, ns: ns,
			sa: cmp.Or(w.ServiceAccount, ca.DefaultServiceAccount), proxied: true,
		}
		if app, err := splitIPPort(w.App); err == nil {
			ep.appPort = app.Port
		}
		out = append(out, ep)
	}
	return out
}

// bindCapturedPods marks the registry endpoints of s (EndpointSlice
// instances) whose pod runs a connected sidecar that captures its traffic
// (INTERCEPTION_MODE REDIRECT): connections to the pod's address reach
// that sidecar's inbound listener, which terminates mTLS. The sidecar's
// service account stands in for one the registry does not know. A sidecar
// that does not capture leaves the pod's address to the application,
// which must receive plain text.
func (b *builder) bindCapturedPods(s *service, eps []endpoint) {
	for i := range eps {
		ep := &eps[i]
		for _, w := range b.fleet {
			if w.Interception != nodemeta.InterceptionRedirect || (w.Role != "" && w.Role != nodemeta.RoleSidecar) || w.Generator != "" {
				continue
			}
			if cmp.Or(w.Namespace, nodemeta.DefaultNamespace) != s.namespace {
				continue
			}
			if (w.Pod != "" && w.Pod == ep.workload) || slices.Contains(w.InstanceIPs, ep.address) {
				ep.proxied = true
				ep.sa = cmp.Or(ep.sa, w.ServiceAccount, ca.DefaultServiceAccount)
				break
			}
		}
	}
}

// selectEndpoints returns the endpoints whose labels match a subset's.
func selectEndpoints(eps []endpoint, labels map[string]string) []endpoint {
	var out []endpoint
	for _, ep := range eps {
		if labelsMatch(labels, ep.labels) {
			out = append(out, ep)
		}
	}
	return out
}

// endpointPort is the port an endpoint serves service port pt on: the
// fleet workload's inbound port, else the endpoint's port of the same name,
// else the targetPort, else the port number.
func endpointPort(ep endpoint, pt servicePort) uint32 {
	if ep.port != 0 {
		return ep.port
	}
	if n, ok := ep.ports[pt.name]; ok && pt.name != "" {
		return n
	}
	if pt.targetPort != 0 {
		return pt.targetPort
	}
	return pt.number
}

// loadAssignment returns the ClusterLoadAssignment of cluster name: one
// locality (weight 1, which grpc-go requires) with the endpoints sorted by
// address, port and workload. No endpoints make an empty assignment.
func loadAssignment(name string, eps []endpoint, pt servicePort) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(eps) == 0 {
		return cla
	}
	type bound struct {
		ep   endpoint
		port uint32
	}
	bs := make([]bound, len(eps))
	for i, ep := range eps {
		bs[i] = bound{ep, endpointPort(ep, pt)}
	}
	sort.SliceStable(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		switch {
		case a.ep.address != b.ep.address:
			return a.ep.address < b.ep.address
		case a.port != b.port:
			return a.port < b.port
		}
		return a.ep.workload < b.ep.workload
	})
	loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapUint32(1)}
	for _, x := range bs {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(x.ep.address, x.port),
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapUint32(x.ep.weight),
			Metadata:            endpointMetadata(x.ep),
		})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla
}

// endpointMetadata is filter_metadata.istio = {workload, namespace,
// version, labels} (version and labels only when set), and for a meshed
// instance filter_metadata["envoy.transport_socket_match"] = {tlsMode:
// istio}, which picks the cluster's ISTIO_MUTUAL transport socket.
func endpointMetadata(ep endpoint) *corev3.Metadata {
	fields := map[string]*structpb.Value{
		"workload":  structpb.NewStringValue(ep.workload),
		"namespace": structpb.NewStringValue(ep.ns),
	}
	if v := ep.labels["version"]; v != "" {
		fields["version"] = structpb.NewStringValue(v)
	}
	if len(ep.labels) > 0 {
		lv := make(map[string]*structpb.Value, len(ep.labels))
		for k, v := range ep.labels {
			lv[k] = structpb.NewStringValue(v)
		}
		fields["labels"] = structpb.NewStructValue(&structpb.Struct{Fields: lv})
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: fields}}}
	if ep.meshed {
		md.FilterMetadata[transportSocketMatchKey] = transportSocketMatchMetadata()
	}
	return md
}

func wrapUint32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

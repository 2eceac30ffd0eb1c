// Package registry is gitmesh's service registry: the hosts of the mesh
// (services with their ports, selectors and visibility) and the workloads
// that may back them.
//
// The compiler reads a Registry; it never fills one. A Registry is fed
// from one place at a time: today from the Kubernetes objects of a
// Revision (FromObjects, for a repository that keeps its Service and
// Deployment manifests next to its Istio YAML); in Kubernetes mode from
// the API server's Services, EndpointSlices and Pods. Both feeds convert
// through the same functions (ServiceFromKubernetes, Protocol), so a
// Service means the same thing wherever it was read. ServiceEntries stay
// with the compiler, which merges them with a Registry's services by the
// rules in docs/architecture.md ("Service registry").
package registry

import "github.com/gitmesh/gitmesh/sources"

// Registry is what the compiler reads about services and workloads.
//
// Implementations must be safe for concurrent reads and must not change
// the values they returned: a feed that learns something new builds a new
// Registry (see Static), so one compile sees one consistent view.
type Registry interface {
	// Services returns every service, sorted by Hostname then Namespace.
	Services() []*Service
	// Workloads returns every declared workload, sorted by Namespace,
	// Kind and Name.
	Workloads() []*Workload
}

// Source says where a Service was declared.
type Source string

// Sources of services.
const (
	// SourceKubernetes is a Kubernetes v1 Service (from Git or from the
	// API server).
	SourceKubernetes Source = "Kubernetes"
)

// Service is one host of the mesh.
type Service struct {
	// Hostname is the fully qualified host name,
	// "<name>.<namespace>.svc.cluster.local" for a Kubernetes Service.
	Hostname string
	// Name and Namespace are the declaring object's.
	Name      string
	Namespace string
	// Source is where the service was declared.
	Source Source
	// Ports are the service ports, in declaration order. Ports Istio does
	// not proxy (UDP, SCTP) are left out.
	Ports []Port
	// Selector is the label selector of the workloads that back the
	// service: meshed workloads of Namespace whose labels include every
	// key and value. Nil when the service has no selector (its endpoints
	// are managed elsewhere, or it has none).
	Selector map[string]string
	// ExportTo lists the namespaces the service is visible to, with "."
	// already resolved to Namespace; nil (or a list holding "*") means
	// every namespace, as Istio's default; ["~"] means none. From the
	// networking.istio.io/exportTo annotation for a Kubernetes Service.
	ExportTo []string
	// Addresses are the service's virtual IPs (spec.clusterIPs), the
	// original destinations a captured client dials (docs/capture.md);
	// empty for a headless Service.
	Addresses []string
	// Endpoints are instances known without a selector (EndpointSlices in
	// Kubernetes mode). The Git feed leaves it empty: endpoints come from
	// the meshed workloads the Selector picks when the compiler runs.
	Endpoints []Endpoint
	// Object is the object the service was read from, for diagnostics;
	// nil when the service came from the API server.
	Object *sources.Object
}

// ExportedTo reports whether the service is visible to namespace ns.
func (s *Service) ExportedTo(ns string) bool {
	if len(s.ExportTo) == 0 {
		return true
	}
	for _, n := range s.ExportTo {
		if n == "*" || n == ns {
			return true
		}
	}
	return false
}

// ExportedToAll reports whether the service is visible to every namespace.
func (s *Service) ExportedToAll() bool { return s.ExportedTo("*") }

// Port is one service port.
type Port struct {
	// Name is the port name ("http", "grpc-api"); it may be empty on a
	// single-port Service.
	Name string
	// Number is the service port (1-65535).
	Number uint32
	// Protocol is the protocol Istio selects for the port (see Protocol).
	Protocol Protocol
	// TargetPort is the workload port traffic goes to; 0 when it is the
	// same as Number or could not be resolved (see TargetPortName).
	TargetPort uint32
	// TargetPortName is a named targetPort ("http-web"), resolved against
	// the container ports of the workloads the service selects; "" when
	// targetPort is a number or unset.
	TargetPortName string
	// Field is the path of the port in Object ("spec.ports[0]").
	Field string
}

// Workload is a set of pods declared in the registry's source (a
// Deployment's pod template, a Pod), or a pod the API server reports.
type Workload struct {
	// Kind is the declaring kind ("Deployment", "StatefulSet", "Pod", ...).
	Kind string
	// Name and Namespace are the declaring object's.
	Name      string
	Namespace string
	// Labels are the pods' labels (a pod template's metadata.labels).
	Labels map[string]string
	// Ports maps the containers' named ports to their numbers, to resolve
	// a Service's named targetPort.
	Ports map[string]uint32
	// ServiceAccount is the pods' spec.serviceAccountName ("default" when
	// unset, as Kubernetes admits a pod): the identity of their SPIFFE id.
	ServiceAccount string
	// Address is the pod IP; "" for a declaration (a pod template).
	Address string
	// Object is the object the workload was read from; nil from the API
	// server.
	Object *sources.Object
}

// Endpoint is one instance of a service known to the registry.
type Endpoint struct {
	// Address is an IP address.
	Address string
	// Ports maps service port names to the instance's port numbers.
	Ports map[string]uint32
	// Labels are the instance's labels (its pod's).
	Labels map[string]string
	// Ready is false for an instance that must not receive traffic
	// (EndpointSlice condition ready=false).
	Ready bool
	// Workload names the instance (pod name).
	Workload string
	// ServiceAccount is the service account of the instance's pod; "" when
	// the pod is not known.
	ServiceAccount string
}

// Selects reports whether selector picks labels: every key of selector
// is in labels with the same value. An empty selector selects everything,
// as a Kubernetes label selector does.
func Selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

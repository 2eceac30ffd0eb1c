package registry

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gitmesh/gitmesh/ca"
)

// ExportToAnnotation is the Service annotation Istio reads as the
// Service's exportTo: a comma-separated list of namespaces, "." (the
// Service's own), "*" (all) or "~" (none).
const ExportToAnnotation = "networking.istio.io/exportTo"

// ClusterDomainSuffix ends the host name of every Kubernetes Service.
const ClusterDomainSuffix = ".svc.cluster.local"

// Hostname returns "<name>.<namespace>.svc.cluster.local".
func Hostname(name, namespace string) string {
	return name + "." + namespace + ClusterDomainSuffix
}

// ServiceFromKubernetes converts a Kubernetes Service into a registry
// Service, as Istio's Kubernetes registry does: the host is
// name.namespace.svc.cluster.local, each port gets the protocol
// SelectProtocol picks, UDP and SCTP ports are left out (Istio does not
// proxy them), the selector is spec.selector and exportTo comes from the
// networking.istio.io/exportTo annotation. ns is the namespace to use
// when metadata.namespace is empty. A named targetPort is kept in
// TargetPortName for the caller to resolve against its workloads.
func ServiceFromKubernetes(svc *corev1.Service, ns string) *Service {
	if svc.Namespace != "" {
		ns = svc.Namespace
	}
	s := &Service{
		Hostname:  Hostname(svc.Name, ns),
		Name:      svc.Name,
		Namespace: ns,
		Source:    SourceKubernetes,
		ExportTo:  ParseExportTo(svc.Annotations[ExportToAnnotation], ns),
	}
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if ip != "" && ip != corev1.ClusterIPNone && !slices.Contains(s.Addresses, ip) {
			s.Addresses = append(s.Addresses, ip)
		}
	}
	if len(svc.Spec.Selector) > 0 {
		s.Selector = make(map[string]string, len(svc.Spec.Selector))
		for k, v := range svc.Spec.Selector {
			s.Selector[k] = v
		}
	}
	for i, p := range svc.Spec.Ports {
		proto := SelectProtocol(uint32(p.Port), p.Name, string(p.Protocol), p.AppProtocol)
		if proto == ProtocolUDP || p.Protocol == corev1.ProtocolSCTP {
			continue
		}
		pt := Port{Name: p.Name, Number: uint32(p.Port), Protocol: proto, Field: fmt.Sprintf("spec.ports[%d]", i)}
		switch p.TargetPort.Type {
		case intstr.Int:
			if n := p.TargetPort.IntVal; n > 0 && uint32(n) != pt.Number {
				pt.TargetPort = uint32(n)
			}
		case intstr.String:
			pt.TargetPortName = p.TargetPort.StrVal
		}
		s.Ports = append(s.Ports, pt)
	}
	return s
}

// ParseExportTo reads an exportTo annotation of an object in namespace
// ns: "" is nil (every namespace); "." becomes ns; blanks around names
// are dropped.
func ParseExportTo(annotation, ns string) []string {
	if strings.TrimSpace(annotation) == "" {
		return nil
	}
	var out []string
	for _, x := range strings.Split(annotation, ",") {
		x = strings.TrimSpace(x)
		if x == "." {
			x = ns
		}
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// WorkloadFromPodTemplate returns the workload a pod template declares
// (a Deployment's, StatefulSet's, DaemonSet's, ReplicaSet's or Job's
// spec.template, or a Pod's metadata and spec).
func WorkloadFromPodTemplate(kind, name, ns string, meta map[string]string, spec *corev1.PodSpec) *Workload {
	w := &Workload{Kind: kind, Name: name, Namespace: ns}
	if len(meta) > 0 {
		w.Labels = make(map[string]string, len(meta))
		for k, v := range meta {
			w.Labels[k] = v
		}
	}
	w.ServiceAccount = ServiceAccount(spec)
	if spec != nil {
		for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
			for _, p := range c.Ports {
				if p.Name == "" || p.ContainerPort <= 0 {
					continue
				}
				if w.Ports == nil {
					w.Ports = map[string]uint32{}
				}
				if _, dup := w.Ports[p.Name]; !dup {
					w.Ports[p.Name] = uint32(p.ContainerPort)
				}
			}
		}
	}
	return w
}

// ResolveTargetPorts sets TargetPort of every port of s with a named
// targetPort to the container port of that name on the first workload s
// selects that has one, as kube-proxy resolves it per pod. Ports whose
// name no selected workload declares keep TargetPort 0.
func ResolveTargetPorts(s *Service, workloads []*Workload) {
	if s.Selector == nil {
		return
	}
	for i := range s.Ports {
		pt := &s.Ports[i]
		if pt.TargetPortName == "" {
			continue
		}
		for _, w := range workloads {
			if w.Namespace != s.Namespace || !Selects(s.Selector, w.Labels) {
				continue
			}
			if n, ok := w.Ports[pt.TargetPortName]; ok {
				if n != pt.Number {
					pt.TargetPort = n
				}
				break
			}
		}
	}
}

// ServiceAccount is the service account pods of spec run as:
// spec.serviceAccountName, "default" when unset (as Kubernetes admits a
// pod) or when spec is nil.
func ServiceAccount(spec *corev1.PodSpec) string {
	if spec != nil && spec.ServiceAccountName != "" {
		return spec.ServiceAccountName
	}
	return ca.DefaultServiceAccount
}

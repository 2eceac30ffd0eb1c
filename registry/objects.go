package registry

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/sources"
)

// Reason classifies a Finding, so that a caller can map it to its own
// diagnostic codes.
type Reason int

// Reasons a Finding is reported for.
const (
	// ReasonInvalid: the object does not decode as its kind, or lacks
	// metadata.name.
	ReasonInvalid Reason = iota + 1
	// ReasonDuplicate: a second object of the same kind, namespace and
	// name.
	ReasonDuplicate
	// ReasonPortName: a Service port whose name and appProtocol name no
	// protocol (istioctl IST0118 PortNameIsNotUnderNamingConvention).
	ReasonPortName
)

// Finding is something FromObjects noticed about one object.
type Finding struct {
	// Object is the object the finding is about.
	Object *sources.Object
	// Namespace is the object's namespace, defaulted.
	Namespace string
	// Field is the dotted path of the offending field ("" for the object).
	Field string
	// Reason classifies the finding.
	Reason Reason
	// Message says what is wrong, in one line.
	Message string
}

// IsKubernetesKind reports whether FromObjects reads objects of this
// apiVersion and kind: core v1 Service, Pod and ReplicationController,
// apps/v1 Deployment, StatefulSet, DaemonSet and ReplicaSet, batch/v1 Job
// and CronJob.
func IsKubernetesKind(apiVersion, kind string) bool {
	switch apiVersion {
	case "v1":
		return kind == "Service" || kind == "Pod" || kind == "ReplicationController"
	case "apps/v1":
		return kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet"
	case "batch/v1":
		return kind == "Job" || kind == "CronJob"
	}
	return false
}

// FromObjects is the Revision feed: it reads the Kubernetes objects among
// objs (see IsKubernetesKind; others are skipped) into a Static registry.
// ns is the namespace of objects without metadata.namespace. Named
// targetPorts are resolved against the declared workloads. Objects that
// do not decode are left out and reported as Findings, as are Service
// ports whose protocol Istio would have to detect.
func FromObjects(objs []sources.Object, ns string) (*Static, []Finding) {
	var services []*Service
	var workloads []*Workload
	var findings []Finding
	seen := map[string]bool{}
	for i := range objs {
		obj := &objs[i]
		if !IsKubernetesKind(obj.APIVersion, obj.Kind) {
			continue
		}
		objNS := obj.Namespace
		if objNS == "" {
			objNS = ns
		}
		report := func(reason Reason, field, format string, args ...any) {
			findings = append(findings, Finding{Object: obj, Namespace: objNS, Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)})
		}
		if obj.Name == "" {
			report(ReasonInvalid, "metadata.name", "metadata.name is required")
			continue
		}
		key := obj.APIVersion + "/" + obj.Kind + "/" + objNS + "/" + obj.Name
		if seen[key] {
			report(ReasonDuplicate, "metadata.name", "%s %s/%s is defined twice", obj.Kind, objNS, obj.Name)
			continue
		}
		seen[key] = true
		if obj.Kind == "Service" {
			var svc corev1.Service
			if err := yaml.Unmarshal(obj.YAML, &svc); err != nil {
				report(ReasonInvalid, "spec", "decoding Service: %s", cleanYAMLError(err))
				continue
			}
			s := ServiceFromKubernetes(&svc, objNS)
			s.Object = obj
			for _, pt := range s.Ports {
				if pt.Protocol == ProtocolUnknown {
					report(ReasonPortName, pt.Field+".name",
						"port name %q (port %d) does not name a protocol (http, http2, grpc, tcp, tls, ... or <protocol>-<suffix>) and no appProtocol is set", pt.Name, pt.Number)
				}
			}
			services = append(services, s)
			continue
		}
		w, err := decodeWorkload(obj, objNS)
		if err != nil {
			report(ReasonInvalid, "spec", "decoding %s: %s", obj.Kind, cleanYAMLError(err))
			continue
		}
		w.Object = obj
		workloads = append(workloads, w)
	}
	for _, s := range services {
		ResolveTargetPorts(s, workloads)
	}
	return NewStatic(services, workloads), findings
}

// decodeWorkload reads the pod template of a workload kind.
func decodeWorkload(obj *sources.Object, ns string) (*Workload, error) {
	var t *corev1.PodTemplateSpec
	var err error
	switch obj.Kind {
	case "Pod":
		var x corev1.Pod
		if err := yaml.Unmarshal(obj.YAML, &x); err != nil {
			return nil, err
		}
		return WorkloadFromPodTemplate(obj.Kind, obj.Name, ns, x.Labels, &x.Spec), nil
	case "CronJob":
		t, err = podTemplate(obj.YAML, func(x *batchv1.CronJob) *corev1.PodTemplateSpec { return &x.Spec.JobTemplate.Spec.Template })
	case "Deployment":
		t, err = podTemplate(obj.YAML, func(x *appsv1.Deployment) *corev1.PodTemplateSpec { return &x.Spec.Template })
	case "StatefulSet":
		t, err = podTemplate(obj.YAML, func(x *appsv1.StatefulSet) *corev1.PodTemplateSpec { return &x.Spec.Template })
	case "DaemonSet":
		t, err = podTemplate(obj.YAML, func(x *appsv1.DaemonSet) *corev1.PodTemplateSpec { return &x.Spec.Template })
	case "ReplicaSet":
		t, err = podTemplate(obj.YAML, func(x *appsv1.ReplicaSet) *corev1.PodTemplateSpec { return &x.Spec.Template })
	case "Job":
		t, err = podTemplate(obj.YAML, func(x *batchv1.Job) *corev1.PodTemplateSpec { return &x.Spec.Template })
	case "ReplicationController":
		t, err = podTemplate(obj.YAML, func(x *corev1.ReplicationController) *corev1.PodTemplateSpec { return x.Spec.Template })
	}
	if err != nil {
		return nil, err
	}
	if t == nil {
		return WorkloadFromPodTemplate(obj.Kind, obj.Name, ns, nil, nil), nil
	}
	return WorkloadFromPodTemplate(obj.Kind, obj.Name, ns, t.Labels, &t.Spec), nil
}

// podTemplate decodes b as a T, the whole object so that a malformed
// field anywhere is reported, and returns the pod template template
// picks out of it (nil when there is none).
func podTemplate[T any](b []byte, template func(*T) *corev1.PodTemplateSpec) (*corev1.PodTemplateSpec, error) {
	var x T
	if err := yaml.Unmarshal(b, &x); err != nil {
		return nil, err
	}
	return template(&x), nil
}

// cleanYAMLError drops the decoder's package prefixes.
func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error unmarshaling JSON: ")
	s = strings.TrimPrefix(s, "while decoding JSON: ")
	s = strings.TrimPrefix(s, "json: ")
	return s
}

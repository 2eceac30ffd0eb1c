package kube

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trim is the informers' transform: it keeps of each object only what
// Build reads, so the caches of a large cluster stay small. Pods keep
// name, namespace, labels, service account, named container ports and
// IPs; every object loses its managedFields. Other values (a DeletedFinalStateUnknown
// tombstone) pass unchanged.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p := &corev1.Pod{
			TypeMeta: o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels,
			},
			Status: corev1.PodStatus{PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}
		p.Spec.ServiceAccountName = o.Spec.ServiceAccountName
		p.Spec.InitContainers = trimContainers(o.Spec.InitContainers)
		p.Spec.Containers = trimContainers(o.Spec.Containers)
		return p, nil
	case metav1.Object:
		o.SetManagedFields(nil)
		return o, nil
	}
	return obj, nil
}

// trimContainers keeps each container's name and named ports.
func trimContainers(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		t := corev1.Container{Name: c.Name}
		for _, p := range c.Ports {
			if p.Name != "" {
				t.Ports = append(t.Ports, p)
			}
		}
		out = append(out, t)
	}
	return out
}

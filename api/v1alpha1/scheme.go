package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of gitmesh's kinds.
const Group = "gitmesh.io"

// SchemeGroupVersion is the group and version of the MeshRollout custom
// resource, for Kubernetes clients.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

// AddToScheme registers MeshRollout and MeshRolloutList with a scheme.
// (RolloutPolicy is a Git kind, never served by an API server.)
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &MeshRollout{}, &MeshRolloutList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

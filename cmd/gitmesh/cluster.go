package main

import (
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/controller"
)

// clusterFlags choose where a controller in Kubernetes mode keeps its
// state: a MeshRollout (and its Secrets and Lease) in a namespace, which
// makes replicas possible (docs/kubernetes.md, "HA").
type clusterFlags struct {
	namespace, name string
	checkPods       bool
	podSelector     string
}

func addClusterFlags(f *pflag.FlagSet) *clusterFlags {
	var fl clusterFlags
	f.StringVar(&fl.namespace, "state-namespace", os.Getenv("POD_NAMESPACE"), "Kubernetes mode: namespace of the MeshRollout, its Secrets and the leader Lease; empty keeps the state in --state-dir (default $POD_NAMESPACE)")
	f.StringVar(&fl.name, "meshrollout", "gitmesh", "Kubernetes mode: name of the MeshRollout and of the leader Lease")
	f.BoolVar(&fl.checkPods, "check-pods", true, "Kubernetes mode with --state-namespace: refuse a sidecar whose announced pod, namespace, service account or IP does not match its Pod")
	f.StringVar(&fl.podSelector, "leader-pod-selector", "", "Kubernetes mode: label selector of the controller replicas' Pods; the leader labels its own Pod gitmesh.io/leader=true ($POD_NAME, $POD_NAMESPACE) and removes the label from the others it selects (empty: every Pod of $POD_NAMESPACE)")
	return &fl
}

// config returns the cluster state configuration: nil outside Kubernetes
// mode (kube nil) or without a namespace.
func (fl *clusterFlags) config(kube *rest.Config) *controller.ClusterConfig {
	if kube == nil || fl.namespace == "" {
		return nil
	}
	return &controller.ClusterConfig{REST: kube, Namespace: fl.namespace, Name: fl.name, CheckPods: fl.checkPods, LeaderPodSelector: fl.podSelector}
}

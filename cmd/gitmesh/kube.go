package main

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubernetesDefault is the default of --kubernetes: on inside a pod, where
// the kubelet sets KUBERNETES_SERVICE_HOST.
func kubernetesDefault() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// kubeRESTConfig returns the API server credentials of Kubernetes mode:
// the kubeconfig file when one is given, else the pod's service account
// when running in a cluster, else $KUBECONFIG or ~/.kube/config (the
// current context), as kubectl finds them.
func kubeRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading --kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	if kubernetesDefault() {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("loading the in-cluster Kubernetes config: %w", err)
		}
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading a kubeconfig (set --kubeconfig, or run in a pod): %w", err)
	}
	return cfg, nil
}

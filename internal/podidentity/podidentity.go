// Package podidentity checks what a sidecar in a Kubernetes pod announces
// (pod name, namespace, service account, IPs: the downward API values
// Istio's sidecar sends too) against the Pod object before the xds server
// serves it, and takes the workload's labels from the Pod rather than
// from the node's claim.
//
// On its own this is a consistency check, not authentication: a client
// that can reach the xDS port and knows a pod's name, account and IP can
// claim it. With the locked control plane (xds/xdsauth) the claim is
// proved first: the stream's certificate binds the namespace, service
// account and pod of the ServiceAccount token the sidecar joined with.
package podidentity

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/xds"
)

// PodGetter returns the Pod namespace/name, or an error that wraps a
// Kubernetes NotFound when there is none. An informer's lister adapted
// with PodGetterFunc, or Client, implement it.
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// PodGetterFunc adapts a function to PodGetter.
type PodGetterFunc func(ctx context.Context, namespace, name string) (*corev1.Pod, error)

// GetPod calls f.
func (f PodGetterFunc) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return f(ctx, namespace, name)
}

var _ PodGetter = PodGetterFunc(nil)

// Client reads Pods from the API server, one GET per new stream.
type Client struct{ kubernetes.Interface }

var _ PodGetter = Client{}

// GetPod reads the Pod.
func (c Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// ErrMismatch is wrapped by every refusal of Check: what the node
// announced does not match its Pod.
var ErrMismatch = errors.New("pod identity mismatch")

// Checker checks nodes against their Pods.
type Checker struct {
	pods PodGetter
}

// New returns a Checker that reads Pods with pods.
func New(pods PodGetter) *Checker { return &Checker{pods: pods} }

var _ xds.AdmitFunc = (*Checker)(nil).Check

// Check, the xds.AdmitFunc of the Kubernetes mode, returns w with the
// Pod's labels when the Pod w.Namespace/w.Pod exists and has w's service
// account and one of w's IPs (all of them); else an error that wraps
// ErrMismatch and says what differs.
func (c *Checker) Check(ctx context.Context, w nodemeta.Workload) (nodemeta.Workload, error) {
	if w.Pod == "" {
		return w, fmt.Errorf("%w: node %s announces no pod name (%s metadata; the proxy's --pod-name or $POD_NAME from the downward API)", ErrMismatch, w.ID, nodemeta.KeyPodName)
	}
	ref := w.Namespace + "/" + w.Pod
	pod, err := c.pods.GetPod(ctx, w.Namespace, w.Pod)
	if apierrors.IsNotFound(err) {
		return w, fmt.Errorf("%w: node %s claims pod %s, which does not exist in namespace %s", ErrMismatch, w.ID, ref, w.Namespace)
	}
	if err != nil {
		return w, fmt.Errorf("reading pod %s of node %s: %w", ref, w.ID, err)
	}
	if pod.Namespace != "" && pod.Namespace != w.Namespace {
		return w, fmt.Errorf("%w: node %s announces namespace %s; pod %s is in %s", ErrMismatch, w.ID, w.Namespace, w.Pod, pod.Namespace)
	}
	sa := registry.ServiceAccount(&pod.Spec)
	if w.ServiceAccount != sa {
		return w, fmt.Errorf("%w: node %s announces service account %q; pod %s runs as %q", ErrMismatch, w.ID, w.ServiceAccount, ref, sa)
	}
	podIPs := podIPs(pod)
	if len(w.InstanceIPs) == 0 {
		return w, fmt.Errorf("%w: node %s announces no IP (%s metadata; the proxy's --instance-ip or $INSTANCE_IP); pod %s has %v", ErrMismatch, w.ID, nodemeta.KeyInstanceIPs, ref, podIPs)
	}
	for _, ip := range w.InstanceIPs {
		if !slices.Contains(podIPs, ip) {
			return w, fmt.Errorf("%w: node %s announces IP %s; pod %s has %v", ErrMismatch, w.ID, ip, ref, podIPs)
		}
	}
	w.Labels = map[string]string{}
	for k, v := range pod.Labels {
		w.Labels[k] = v
	}
	return w, nil
}

func podIPs(pod *corev1.Pod) []string {
	var ips []string
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if pod.Status.PodIP != "" && !slices.Contains(ips, pod.Status.PodIP) {
		ips = append(ips, pod.Status.PodIP)
	}
	return ips
}

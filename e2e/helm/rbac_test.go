package helm

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

var meshRollouts = schema.GroupVersionResource{Group: "gitmesh.io", Version: "v1alpha1", Resource: "meshrollouts"}

// checkPermissions calls the API server as the controller's
// ServiceAccount: everything the controller needs succeeds, and what it
// must not do is Forbidden (RBAC answers before it looks for the object,
// so names that do not exist are enough).
func checkPermissions(t *testing.T, c kubernetes.Interface, dyn dynamic.Interface, ns, webhook string) {
	ctx := context.Background()
	watch := func(f func(context.Context, metav1.ListOptions) (interface{ Stop() }, error)) error {
		w, err := f(ctx, metav1.ListOptions{})
		if err == nil {
			w.Stop()
		}
		return err
	}
	mr := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gitmesh.io/v1alpha1", "kind": "MeshRollout", "metadata": map[string]any{"name": name},
		}}
	}
	tests := []struct {
		name    string
		call    func() error
		allowed bool
	}{
		// The registry: Services, EndpointSlices, Pods, Namespaces, all namespaces.
		{"list services", func() error { _, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err }, true},
		{"watch services", func() error {
			return watch(func(ctx context.Context, o metav1.ListOptions) (interface{ Stop() }, error) {
				return c.CoreV1().Services("").Watch(ctx, o)
			})
		}, true},
		{"list endpointslices", func() error { _, err := c.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); return err }, true},
		{"watch endpointslices", func() error {
			return watch(func(ctx context.Context, o metav1.ListOptions) (interface{ Stop() }, error) {
				return c.DiscoveryV1().EndpointSlices("").Watch(ctx, o)
			})
		}, true},
		{"list pods", func() error { _, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err }, true},
		{"watch pods", func() error {
			return watch(func(ctx context.Context, o metav1.ListOptions) (interface{ Stop() }, error) {
				return c.CoreV1().Pods("").Watch(ctx, o)
			})
		}, true},
		{"list namespaces", func() error { _, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err }, true},
		{"watch namespaces", func() error {
			return watch(func(ctx context.Context, o metav1.ListOptions) (interface{ Stop() }, error) {
				return c.CoreV1().Namespaces().Watch(ctx, o)
			})
		}, true},
		// Events, on the MeshRollout (any namespace a policy names).
		{"create events", func() error {
			_, err := c.CoreV1().Events("default").Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "perm-check-"},
				InvolvedObject: corev1.ObjectReference{Kind: "MeshRollout", Namespace: "default", Name: "gitmesh"},
				Reason:         "PermissionCheck", Message: "rbac test", Type: corev1.EventTypeNormal,
			}, metav1.CreateOptions{})
			return err
		}, true},
		// The MeshRollout and its status, in the release namespace.
		{"create, get, update a MeshRollout and its status", func() error {
			r := dyn.Resource(meshRollouts).Namespace(ns)
			m := mr("")
			m.SetGenerateName("perm-check-")
			created, err := r.Create(ctx, m, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			obj, err := r.Get(ctx, created.GetName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if obj, err = r.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
				return err
			}
			_ = unstructured.SetNestedField(obj.Object, "Idle", "status", "phase")
			_, err = r.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
			return err
		}, true},
		// Leader election.
		{"create, get, update a Lease", func() error {
			l, err := c.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{GenerateName: "perm-check-"}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if l, err = c.CoordinationV1().Leases(ns).Get(ctx, l.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			_, err = c.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
			return err
		}, true},
		// The leader's pod label, in the release namespace (RBAC answers
		// before the API server looks for the Pod: NotFound means allowed).
		{"patch a pod's labels in the release namespace", func() error {
			_, err := c.CoreV1().Pods(ns).Patch(ctx, "perm-check", types.MergePatchType, []byte(`{"metadata":{"labels":{"gitmesh.io/leader":"true"}}}`), metav1.PatchOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}, true},
		// The state Secrets and the injector's certificate, in the release namespace.
		{"create, update, delete a Secret of the release namespace", func() error {
			s, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "perm-check"}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if s, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				return err
			}
			return c.CoreV1().Secrets(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}, true},
		// The injector's caBundle.
		{"get and update its webhook configuration", func() error {
			hooks := c.AdmissionregistrationV1().MutatingWebhookConfigurations()
			mwc, err := hooks.Get(ctx, webhook, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = hooks.Update(ctx, mwc, metav1.UpdateOptions{})
			return err
		}, true},

		// What it must not do.
		{"list Secrets cluster-wide", func() error { _, err := c.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err }, false},
		{"get a Secret of another namespace", func() error {
			_, err := c.CoreV1().Secrets("default").Get(ctx, "anything", metav1.GetOptions{})
			return err
		}, false},
		{"patch a pod in another namespace", func() error {
			_, err := c.CoreV1().Pods("default").Patch(ctx, "anything", types.MergePatchType, []byte(`{"metadata":{"labels":{"gitmesh.io/leader":"true"}}}`), metav1.PatchOptions{})
			return err
		}, false},
		{"update a pod in the release namespace", func() error {
			_, err := c.CoreV1().Pods(ns).Update(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "perm-check"}}, metav1.UpdateOptions{})
			return err
		}, false},
		{"delete a pod of the release namespace", func() error { return c.CoreV1().Pods(ns).Delete(ctx, "anything", metav1.DeleteOptions{}) }, false},
		{"delete a pod", func() error { return c.CoreV1().Pods("default").Delete(ctx, "anything", metav1.DeleteOptions{}) }, false},
		{"create a pod", func() error {
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		}, false},
		{"update a Service", func() error {
			_, err := c.CoreV1().Services("default").Update(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}}, metav1.UpdateOptions{})
			return err
		}, false},
		{"create a Deployment", func() error {
			_, err := c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"get another webhook configuration", func() error {
			_, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{})
			return err
		}, false},
		{"list webhook configurations", func() error {
			_, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"create a Lease in another namespace", func() error {
			_, err := c.CoordinationV1().Leases("default").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"create a MeshRollout in another namespace", func() error {
			_, err := dyn.Resource(meshRollouts).Namespace("default").Create(ctx, mr("x"), metav1.CreateOptions{})
			return err
		}, false},
		// The locked control plane: TokenReview of the proxies' tokens, the
		// CA bundle ConfigMap of the release namespace and no other.
		{"create a tokenreview", func() error {
			_, err := c.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "x.y.z", Audiences: []string{"gitmesh"}}}, metav1.CreateOptions{})
			return err
		}, true},
		{"create a ConfigMap in the release namespace", func() error {
			_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "perm-check-ca"}}, metav1.CreateOptions{})
			return err
		}, true},
		{"create a ConfigMap in another namespace", func() error {
			_, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"delete a ConfigMap in the release namespace", func() error {
			return c.CoreV1().ConfigMaps(ns).Delete(ctx, "anything", metav1.DeleteOptions{})
		}, false},
		{"update a namespace's labels", func() error {
			_, err := c.CoreV1().Namespaces().Update(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.UpdateOptions{})
			return err
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			switch {
			case tt.allowed && err != nil:
				t.Errorf("the controller's ServiceAccount cannot: %v", err)
			case !tt.allowed && !apierrors.IsForbidden(err):
				t.Errorf("the controller's ServiceAccount can (err %v); want Forbidden", err)
			}
		})
	}
}

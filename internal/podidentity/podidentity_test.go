package podidentity_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/kubetest"
	"github.com/gitmesh/gitmesh/internal/podidentity"
)

var restCfg *rest.Config

func TestMain(m *testing.M) {
	var stop func()
	restCfg, stop = kubetest.Start(m)
	code := m.Run()
	stop()
	os.Exit(code)
}

// TestCheck checks announced identities against a Pod in a real API server.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(restCfg)
	ns := "shop"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews-v2-abc", Namespace: ns, Labels: map[string]string{"app": "reviews", "version": "v2"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "reviews", Containers: []corev1.Container{{Name: "app", Image: "reviews"}}},
	}
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No kubelet: the test sets the status a kubelet would.
	pod.Status.PodIP, pod.Status.PodIPs = "127.0.0.42", []corev1.PodIP{{IP: "127.0.0.42"}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	good := nodemeta.Workload{ID: "reviews-v2-abc.shop", Namespace: ns, Pod: "reviews-v2-abc", ServiceAccount: "reviews",
		InstanceIPs: []string{"127.0.0.42"}, Labels: map[string]string{"app": "reviews", "version": "v3", "admin": "true"}}
	tests := []struct {
		name    string
		change  func(w *nodemeta.Workload)
		wantErr string
	}{
		{name: "matches; labels from the Pod"},
		{name: "no pod name", change: func(w *nodemeta.Workload) { w.Pod = "" }, wantErr: "announces no pod name"},
		{name: "no such pod", change: func(w *nodemeta.Workload) { w.Pod = "ratings-v1-xyz" }, wantErr: "does not exist in namespace shop"},
		{name: "other namespace", change: func(w *nodemeta.Workload) { w.Namespace = "default" }, wantErr: "does not exist in namespace default"},
		{name: "other service account", change: func(w *nodemeta.Workload) { w.ServiceAccount = "admin" }, wantErr: `runs as "reviews"`},
		{name: "other IP", change: func(w *nodemeta.Workload) { w.InstanceIPs = []string{"127.0.0.43"} }, wantErr: "announces IP 127.0.0.43"},
		{name: "no IP", change: func(w *nodemeta.Workload) { w.InstanceIPs = nil }, wantErr: "announces no IP"},
	}
	c := podidentity.New(podidentity.Client{Interface: cs})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := good
			if tt.change != nil {
				tt.change(&w)
			}
			got, err := c.Check(ctx, w)
			if tt.wantErr != "" {
				if !errors.Is(err, podidentity.ErrMismatch) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Check = %v; want ErrMismatch saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if nodemeta.FormatLabels(got.Labels) != "app=reviews,version=v2" {
				t.Errorf("labels = %s; want the Pod's app=reviews,version=v2", nodemeta.FormatLabels(got.Labels))
			}
		})
	}
}

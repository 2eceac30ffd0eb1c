package kubetest_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/kubetest"
)

var cfg *rest.Config

func TestMain(m *testing.M) {
	var stop func()
	cfg, stop = kubetest.Start(m, kubetest.WithCRDDirectory("testdata/crd"))
	code := m.Run()
	stop()
	os.Exit(code)
}

func TestControlPlaneServesCoreAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating a clientset: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	got, err := cs.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading namespace back: %v", err)
	}
	if got.UID == "" {
		t.Errorf("namespace has no UID; want one assigned by the API server")
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("reading the server version: %v", err)
	}
	t.Logf("kube-apiserver %s", v.GitVersion)
}

func TestWithCRDDirectoryServesTheCRD(t *testing.T) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating a clientset: %v", err)
	}
	res, err := cs.Discovery().ServerResourcesForGroupVersion("kubetest.gitmesh.io/v1")
	if err != nil {
		t.Fatalf("discovering kubetest.gitmesh.io/v1: %v", err)
	}
	var kinds []string
	for _, r := range res.APIResources {
		kinds = append(kinds, r.Kind)
	}
	if len(kinds) != 1 || kinds[0] != "Widget" {
		t.Errorf("kinds served = %v; want [Widget]", kinds)
	}
}

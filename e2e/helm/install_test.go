package helm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/inject"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/helmtest"
)

const (
	release   = "gitmesh"
	namespace = "gitmesh-system"
	// Names the chart gives release "gitmesh" in gitmesh-system.
	webhookName    = "gitmesh-sidecar-injector-gitmesh-system"
	injectorSecret = "gitmesh-injector-tls"
	serviceAccount = "gitmesh"
)

// TestHelmInstallUpgradeUninstall installs the chart, runs the controller
// as the chart's ServiceAccount, points the webhook at it with helm
// upgrade, creates pods, and uninstalls.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helmtest.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := helmCmd{t: t, env: []string{"KUBECONFIG=" + writeKubeconfig(t, adminCfg)}}
	chart := helmtest.ChartDir(t)
	admin := kubernetes.NewForConfigOrDie(adminCfg)

	// Install: the webhook points at a port nobody listens on until the
	// controller runs (the upgrade below moves it).
	start := time.Now()
	h.run("install", release, chart, "--namespace", namespace, "--create-namespace",
		"--set", "git.url=https://git.example.com/acme/mesh-policy.git",
		"--set", "injector.webhook.url=https://127.0.0.1:1/inject",
		"--set", "controller.replicas=2")
	t.Logf("helm install: %s", time.Since(start).Round(time.Millisecond))
	t.Run("installed", func(t *testing.T) {
		var st struct {
			Info struct{ Status string } `json:"info"`
		}
		if err := json.Unmarshal([]byte(h.run("status", release, "--namespace", namespace, "-o", "json")), &st); err != nil || st.Info.Status != "deployed" {
			t.Fatalf("release status %q (%v); want deployed", st.Info.Status, err)
		}
		for _, name := range []string{"gitmesh", "gitmesh-gateway"} {
			if _, err := admin.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("deployment %s: %v", name, err)
			}
		}
		for _, name := range []string{"gitmesh-xds", "gitmesh-admin", "gitmesh-injector", "gitmesh-gateway"} {
			if _, err := admin.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		if _, err := admin.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx, "gitmesh", metav1.GetOptions{}); err != nil {
			t.Errorf("no PodDisruptionBudget with two replicas: %v", err)
		}
		if tok := adminToken(ctx, t, admin); len(tok) < 32 {
			t.Errorf("admin token %q; want a generated one", tok)
		}
		dyn := dynamic.NewForConfigOrDie(adminCfg)
		if _, err := dyn.Resource(meshRollouts).Namespace(namespace).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the MeshRollout CRD is not served: %v", err)
		}
	})
	tokenBefore := adminToken(ctx, t, admin)

	// The controller, in this process, as the chart's ServiceAccount.
	saCfg := rest.CopyConfig(adminCfg)
	saCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + serviceAccount}
	saClient := kubernetes.NewForConfigOrDie(saCfg)
	t.Run("permissions", func(t *testing.T) {
		checkPermissions(t, saClient, dynamic.NewForConfigOrDie(saCfg), namespace, webhookName)
	})

	tmpl := injectorTemplate(ctx, t, admin)
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: policyRepo(t), StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(e2etest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})),
		Kubernetes: saCfg,
		Cluster:    &controller.ClusterConfig{REST: saCfg, Namespace: namespace, Name: "gitmesh", Identity: "helm-test-replica"},
		Injector: &controller.InjectorConfig{
			Addr: "127.0.0.1:0", Template: tmpl, Kube: saCfg,
			Certs: inject.CertConfig{Namespace: namespace, SecretName: injectorSecret, WebhookName: webhookName,
				Hosts: []string{"127.0.0.1"}, Generate: true, Interval: 200 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatalf("starting the controller as %s: %v", saCfg.Impersonate.UserName, err)
	}
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			if err := c.Wait(); err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	defer stop()

	// The controller issues the certificate and patches the caBundle.
	waitCABundle(t, admin)
	ca := caBundle(ctx, t, admin)

	// Upgrade: the webhook now calls the controller.
	h.run("upgrade", release, chart, "--namespace", namespace, "--reuse-values",
		"--set", "injector.webhook.url=https://"+c.InjectorAddr+"/inject")
	t.Run("upgraded", func(t *testing.T) {
		mwc, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := *mwc.Webhooks[0].ClientConfig.URL; got != "https://"+c.InjectorAddr+"/inject" {
			t.Errorf("webhook URL %q after upgrade", got)
		}
		if got := adminToken(ctx, t, admin); got != tokenBefore {
			t.Error("helm upgrade changed the admin token")
		}
		s, err := admin.CoreV1().Secrets(namespace).Get(ctx, injectorSecret, metav1.GetOptions{})
		if err != nil || !bytes.Equal(s.Data[inject.SecretKeyCA], ca) {
			t.Errorf("helm upgrade replaced the certificate the controller issued (err %v)", err)
		}
		waitCABundle(t, admin) // kept by the upgrade, or patched again
	})

	t.Run("injection", func(t *testing.T) {
		for name, labels := range map[string]map[string]string{
			"shop":  {inject.NamespaceLabel: "enabled"},
			"plain": nil,
		} {
			// A namespace outlives its test under envtest (no namespace
			// controller): a second pass finds it, with its labels.
			if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			// No controller-manager creates the default ServiceAccount here.
			if _, err := admin.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name, namespace string
			annotations     map[string]string
			wantInjected    bool
		}{
			{name: "reviews", namespace: "shop", wantInjected: true},
			{name: "opted-out", namespace: "shop", annotations: map[string]string{inject.AnnotationInject: "false"}},
			{name: "reviews", namespace: "plain"},
		}
		for _, tt := range tests {
			t.Run(tt.namespace+"/"+tt.name, func(t *testing.T) {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: tt.name, Annotations: tt.annotations, Labels: map[string]string{"app": "reviews", "version": "v1"}},
					Spec: corev1.PodSpec{
						AutomountServiceAccountToken: new(bool),
						Containers:                   []corev1.Container{{Name: "app", Image: "reviews:1", Ports: []corev1.ContainerPort{{ContainerPort: 9080}}}},
					},
				}
				got, err := admin.CoreV1().Pods(tt.namespace).Create(ctx, pod, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { deletePod(t, admin, tt.namespace, tt.name) })
				injected := slices.ContainsFunc(got.Spec.Containers, func(c corev1.Container) bool { return c.Name == inject.ProxyContainerName })
				if injected != tt.wantInjected {
					t.Fatalf("pod %s/%s has the sidecar: %v; want %v (containers %d, init containers %d)", tt.namespace, tt.name, injected, tt.wantInjected, len(got.Spec.Containers), len(got.Spec.InitContainers))
				}
				if !tt.wantInjected {
					if len(got.Spec.InitContainers) != 0 || got.Annotations[inject.AnnotationStatus] != "" {
						t.Errorf("untouched pod changed: %+v", got.ObjectMeta.Annotations)
					}
					return
				}
				if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != inject.InitContainerName {
					t.Errorf("init containers %+v; want %s (iptables capture)", got.Spec.InitContainers, inject.InitContainerName)
				}
				if got.Annotations[inject.AnnotationStatus] != "injected" {
					t.Errorf("annotations %v; want %s", got.Annotations, inject.AnnotationStatus)
				}
			})
		}
	})

	// The controller campaigns only once its informers have listed
	// Services, EndpointSlices, Pods and Namespaces as the ServiceAccount:
	// holding the Lease proves those reads as well.
	t.Run("the controller leads with its ServiceAccount", func(t *testing.T) {
		e2etest.Poll(t, 30*time.Second, helmPoll, "the Lease held by the test's replica", func() error {
			l, err := admin.CoordinationV1().Leases(namespace).Get(ctx, "gitmesh", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "helm-test-replica" {
				return fmt.Errorf("holder %v: %w", l.Spec.HolderIdentity, errNotYet)
			}
			return nil
		})
		dyn := dynamic.NewForConfigOrDie(adminCfg)
		e2etest.Poll(t, 30*time.Second, helmPoll, "the MeshRollout the controller writes", func() error {
			_, err := dyn.Resource(meshRollouts).Namespace(namespace).Get(ctx, "gitmesh", metav1.GetOptions{})
			return err
		})
	})

	// Uninstall: the release's objects go, the CRD stays (Helm never
	// deletes crds/, so the rollout history survives a reinstall). The
	// controller stops first, as its Deployment would.
	stop()
	ctx = context.Background()
	start = time.Now()
	h.run("uninstall", release, "--namespace", namespace)
	t.Logf("helm uninstall: %s", time.Since(start).Round(time.Millisecond))
	t.Run("uninstalled", func(t *testing.T) {
		gone := func(what string, get func() error) {
			e2etest.Poll(t, 30*time.Second, helmPoll, what+" deleted", func() error {
				if err := get(); !apierrors.IsNotFound(err) {
					return fmt.Errorf("get: %v: %w", err, errNotYet)
				}
				return nil
			})
		}
		gone("deployment", func() error {
			_, err := admin.AppsV1().Deployments(namespace).Get(ctx, "gitmesh", metav1.GetOptions{})
			return err
		})
		gone("webhook configuration", func() error {
			_, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
			return err
		})
		gone("cluster role", func() error {
			_, err := admin.RbacV1().ClusterRoles().Get(ctx, "gitmesh-"+namespace, metav1.GetOptions{})
			return err
		})
		gone("injector secret", func() error {
			_, err := admin.CoreV1().Secrets(namespace).Get(ctx, injectorSecret, metav1.GetOptions{})
			return err
		})
		dyn := dynamic.NewForConfigOrDie(adminCfg)
		if _, err := dyn.Resource(meshRollouts).Namespace(namespace).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the MeshRollout CRD went with the release: %v", err)
		}
		// A pod of an injection namespace is no longer mutated.
		p, err := admin.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "after"},
			Spec: corev1.PodSpec{AutomountServiceAccountToken: new(bool), Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
		if err != nil || len(p.Spec.Containers) != 1 {
			t.Errorf("pod after uninstall: %v (%d containers)", err, len(p.Spec.Containers))
		}
		if err == nil {
			deletePod(t, admin, "shop", p.Name)
		}
	})
}

// adminToken reads the chart's admin token.
func adminToken(ctx context.Context, t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	s, err := c.CoreV1().Secrets(namespace).Get(ctx, "gitmesh-admin-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data["token"])
}

// injectorTemplate reads the chart's injector ConfigMap as the
// controller's --injector-config does.
func injectorTemplate(ctx context.Context, t *testing.T, c kubernetes.Interface) inject.Config {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(namespace).Get(ctx, "gitmesh-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := inject.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func caBundle(ctx context.Context, t *testing.T, c kubernetes.Interface) []byte {
	t.Helper()
	mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}

// waitCABundle waits until the webhook's caBundle is the CA in the
// injector's Secret.
func waitCABundle(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	e2etest.Poll(t, 30*time.Second, helmPoll, "the caBundle patched by the controller", func() error {
		s, err := c.CoreV1().Secrets(namespace).Get(ctx, injectorSecret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Data[inject.SecretKeyCA]) == 0 || !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, s.Data[inject.SecretKeyCA]) {
			return errNotYet
		}
		return nil
	})
}

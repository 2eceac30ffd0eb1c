package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// cluster is a namespace of its own on the package's API server.
type cluster struct {
	t  testing.TB
	cs kubernetes.Interface
	ns string
}

// newCluster creates a namespace for the test and deletes it at the end.
func newCluster(t testing.TB) *cluster {
	t.Helper()
	cs, err := kubernetes.NewForConfig(apiServer)
	if err != nil {
		t.Fatalf("creating a clientset: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	return &cluster{t: t, cs: cs, ns: ns.Name}
}

func (c *cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// service creates Service name with one HTTP port, selecting app=name.
func (c *cluster) service(name string, port int32) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromString("http")}},
		},
	}
	if _, err := c.cs.CoreV1().Services(c.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("creating service %s: %v", name, err)
	}
}

// pod creates a Pod with labels (it never runs: there is no kubelet).
func (c *cluster) pod(name string, labels map[string]string) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
	}
	if _, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("creating pod %s: %v", name, err)
	}
}

// endpoint is one EndpointSlice endpoint: an address, its pod and
// whether it is ready.
type endpoint struct {
	addr  string
	pod   string
	ready bool
}

// endpointSlice creates or updates EndpointSlice name of service svc with
// one port named "http" and eps.
func (c *cluster) endpointSlice(name, svc string, port int32, eps ...endpoint) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(e.ready)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: c.ns, Name: e.pod},
		})
	}
	api := c.cs.DiscoveryV1().EndpointSlices(c.ns)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		c.t.Fatalf("writing endpointslice %s: %v", name, err)
	}
}

func ptr[T any](v T) *T { return &v }

// startController runs a controller in Kubernetes mode against the
// package's API server, with informer resyncs every resync (0: none).
func startController(t testing.TB, repoURL string, resync time.Duration) *controller.Controller {
	t.Helper()
	return start(t, controller.Config{RepoURL: repoURL, Kubernetes: apiServer, KubernetesResync: resync})
}

// startControllerWith runs a controller in Kubernetes mode that reaches
// the API server with kube.
func startControllerWith(t testing.TB, repoURL string, kube *rest.Config) *controller.Controller {
	t.Helper()
	return start(t, controller.Config{RepoURL: repoURL, Kubernetes: kube})
}

// start runs a controller with cfg plus the tests' defaults (path
// "policy", polling every 200ms, loopback listeners, a temporary state
// directory) until the test ends.
func start(t testing.TB, cfg controller.Config) *controller.Controller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Path, cfg.Interval = "policy", 200*time.Millisecond
	cfg.XDSAddr, cfg.AdminAddr, cfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.Logger = e2etest.Logger(t).With("component", "controller")
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := c.Wait(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return c
}

// sidecar runs a bundled client sidecar in namespace ns until the test
// ends and returns its workload (Outbound, Admin addresses).
func sidecar(t testing.TB, xdsAddr, ns, id string) nodemeta.Workload {
	t.Helper()
	w := nodemeta.Workload{
		ID: id, Service: "client", Namespace: ns, Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: testnet.FreeAddr(t), Admin: testnet.FreeAddr(t),
	}
	return e2etest.RunProxy(t, xdsAddr, w)
}

// appliedVersions reads the per-type versions a proxy applied, by type
// URL, from its /config_dump.
func appliedVersions(t testing.TB, adminAddr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/config_dump")
	if err != nil {
		t.Fatalf("reading config_dump: %v", err)
	}
	defer resp.Body.Close()
	var dump struct {
		Versions map[string]string `json:"versions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		t.Fatalf("decoding config_dump: %v", err)
	}
	return dump.Versions
}

// proxyStatus returns the controller's view of proxy id.
func proxyStatus(c *controller.Controller, id string) admin.ProxyStatus {
	for _, p := range c.Reconciler.Status().Proxies {
		if p.ID == id {
			return p
		}
	}
	return admin.ProxyStatus{}
}

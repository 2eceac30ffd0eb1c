package helm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/helmtest"
	"github.com/gitmesh/gitmesh/internal/leader"
)

// TestHelmLeaderPodLabel installs a two-replica release, stands two Pods
// in for the replicas (no kubelet runs them) and runs two controllers as
// the chart's ServiceAccount, each told its Pod and the chart's
// --leader-pod-selector: the leader's Pod gets gitmesh.io/leader=true, a
// stale label on a crashed replica's Pod goes, both replicas are Ready,
// and a failover moves the label to the new leader. The chart's xDS and
// admin Services select exactly the labelled Pod.
func TestHelmLeaderPodLabel(t *testing.T) {
	helmtest.Binary(t)
	const ns = "gitmesh-ha"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := helmCmd{t: t, env: []string{"KUBECONFIG=" + writeKubeconfig(t, adminCfg)}}
	admin := kubernetes.NewForConfigOrDie(adminCfg)
	h.run("install", release, helmtest.ChartDir(t), "--namespace", ns, "--create-namespace",
		"--set", "git.url=https://git.example.com/acme/mesh-policy.git",
		"--set", "controller.replicas=2", "--set", "injector.enabled=false", "--set", "gateway.enabled=false")
	t.Cleanup(func() { h.run("uninstall", release, "--namespace", ns) })

	// The Pods the Deployment would create, with its template's labels;
	// "crashed" is a former leader that died with the label on.
	d, err := admin.AppsV1().Deployments(ns).Get(ctx, "gitmesh", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var selector string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--leader-pod-selector="); ok {
			selector = v
		}
	}
	if selector == "" {
		t.Fatalf("the chart's controller args %q lack --leader-pod-selector", d.Spec.Template.Spec.Containers[0].Args)
	}
	for _, name := range []string{"gitmesh-a", "gitmesh-b", "crashed"} {
		l := map[string]string{}
		for k, v := range d.Spec.Template.Labels {
			l[k] = v
		}
		if name == "crashed" {
			l[leader.PodLabel] = "true"
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: *d.Spec.Template.Spec.DeepCopy()}
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deletePod(t, admin, ns, name) })
	}

	saCfg := rest.CopyConfig(adminCfg)
	saCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + serviceAccount}
	repo := policyRepo(t)
	type replica struct {
		c    *controller.Controller
		stop func()
	}
	start := func(pod string) *replica {
		rctx, rcancel := context.WithCancel(ctx)
		c, err := controller.Start(rctx, controller.Config{
			RepoURL: repo, StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(e2etest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", pod),
			Kubernetes: saCfg,
			Cluster: &controller.ClusterConfig{REST: saCfg, Namespace: ns, Name: "gitmesh", Identity: pod,
				PodName: pod, PodNamespace: ns, LeaderPodSelector: selector,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond},
		})
		if err != nil {
			rcancel()
			t.Fatalf("starting replica %s as %s: %v", pod, saCfg.Impersonate.UserName, err)
		}
		var once sync.Once
		return &replica{c: c, stop: func() {
			once.Do(func() {
				rcancel()
				if err := c.Wait(); err != nil {
					t.Errorf("replica %s: %v", pod, err)
				}
			})
		}}
	}
	// labelled lists the Pods with the leader label that the chart's xDS
	// and admin Services select.
	labelled := func(svc string) (string, error) {
		s, err := admin.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(s.Spec.Selector).String()})
		if err != nil {
			return "", err
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		return strings.Join(names, ","), nil
	}
	wantSelected := func(pod string) {
		t.Helper()
		for _, svc := range []string{"gitmesh-xds", "gitmesh-admin"} {
			e2etest.Poll(t, 30*time.Second, helmPoll, "Service "+svc+" selecting only "+pod, func() error {
				got, err := labelled(svc)
				if err != nil {
					return err
				}
				if got != pod {
					return fmt.Errorf("it selects %q: %w", got, errNotYet)
				}
				return nil
			})
		}
	}
	readyz := func(r *replica) (int, string) {
		resp, err := http.Get("http://" + r.c.AdminAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}

	a := start("gitmesh-a")
	defer func() { a.stop() }()
	e2etest.Poll(t, 30*time.Second, helmPoll, "gitmesh-a leading", func() error {
		if !a.c.Leading() {
			return errNotYet
		}
		return nil
	})
	b := start("gitmesh-b")
	defer func() { b.stop() }()
	t.Run("the leader's pod is labelled, a crashed leader's is not", func(t *testing.T) {
		wantSelected("gitmesh-a")
	})
	t.Run("every replica is ready", func(t *testing.T) {
		for name, r := range map[string]*replica{"leader": a, "follower": b} {
			e2etest.Poll(t, 30*time.Second, helmPoll, name+" /readyz 200", func() error {
				if code, body := readyz(r); code != http.StatusOK {
					return fmt.Errorf("%d %s: %w", code, body, errNotYet)
				}
				return nil
			})
		}
		if _, body := readyz(b); body != "standby" {
			t.Errorf("the follower's /readyz says %q; want standby", body)
		}
		resp, err := http.Post("http://"+b.c.AdminAddr+"/api/v1/reconcile", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("the follower answers %d to an admin call; want 503", resp.StatusCode)
		}
	})
	t.Run("failover moves the label", func(t *testing.T) {
		a.stop()
		e2etest.Poll(t, 30*time.Second, helmPoll, "gitmesh-b leading", func() error {
			if !b.c.Leading() {
				return errNotYet
			}
			return nil
		})
		wantSelected("gitmesh-b")
		// The label may move before the new leader has loaded the last good
		// revision from state; a Service sends it traffic only once its
		// readiness probe passes, which must follow.
		e2etest.Poll(t, 30*time.Second, helmPoll, "the new leader ready", func() error {
			if code, body := readyz(b); code != http.StatusOK {
				return fmt.Errorf("/readyz %d %s: %w", code, body, errNotYet)
			}
			return nil
		})
	})
	t.Run("a crashed leader's label is removed by its successor", func(t *testing.T) {
		// gitmesh-b leads; a's Pod gets the label back as if a had
		// crashed while leading, and b re-claims when it next leads: here
		// b is restarted, as a replica that lost the Lease would be.
		if _, err := admin.CoreV1().Pods(ns).Patch(ctx, "gitmesh-a", "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"`+leader.PodLabel+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		b.stop()
		b = start("gitmesh-b")
		wantSelected("gitmesh-b")
	})
}

//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/kubetest"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/reconciler/kubestate"
)

// startKubeAPI starts kube-apiserver and etcd for one test and installs
// gitmesh's CRDs. The e2e package does not share one control plane in
// TestMain: only this file needs it, and a missing binary must skip only
// its tests (locally; with CI=true it fails them).
func startKubeAPI(t *testing.T) *rest.Config {
	t.Helper()
	dir, err := kubetest.AssetsDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true requires the Kubernetes tests: make kube-tools)", err)
		}
		t.Skipf("%v: build them with make kube-tools", err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: kubetest.StartTimeout}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kubetest.InstallCRDs(ctx, cfg, filepath.Join("..", "config", "crd"), time.Minute); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// replica is one controller replica of the Kubernetes mode.
type replica struct {
	c      *controller.Controller
	cancel context.CancelFunc
	admin  string
}

func startReplica(t *testing.T, cfg *rest.Config, ns, id, repoURL string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: repoURL, Path: "policy", Interval: 200 * time.Millisecond,
		XDSAddr: testnet.FreeAddr(t), AdminAddr: testnet.FreeAddr(t), StateDir: t.TempDir(),
		Logger: e2etest.Logger(t).With("replica", id),
		Cluster: &controller.ClusterConfig{
			REST: cfg, Namespace: ns, Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
			StatusInterval: 300 * time.Millisecond,
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &replica{c: c, cancel: cancel, admin: c.AdminAddr}
	t.Cleanup(func() { r.kill() })
	return r
}

// kill stops the replica (its xDS streams end, it leads no more).
func (r *replica) kill() {
	r.cancel()
	_ = r.c.Wait()
}

// service emulates the chart's xDS Service in front of the replicas' xDS
// ports: each new connection goes to a replica whose /readyz answers 200
// and that leads, as kube-proxy routes only to the ready endpoints the
// selector (gitmesh.io/leader=true, which the leader puts on its Pod)
// picks; with none the connection is closed and the proxy retries.
func service(t *testing.T, replicas func() []*replica) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 300 * time.Millisecond}
	var wg sync.WaitGroup
	var mu sync.Mutex // protects conns
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	ready := func() string {
		for _, r := range replicas() {
			resp, err := hc.Get("http://" + r.admin + "/readyz")
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && r.c.Leading() {
				return r.c.XDSAddr
			}
		}
		return ""
	}
	wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				addr := ready()
				if addr == "" {
					return
				}
				out, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer out.Close()
				track(in, true)
				track(out, true)
				defer track(in, false)
				defer track(out, false)
				done := make(chan struct{}, 2)
				go func() { io.Copy(out, in); done <- struct{}{} }()
				go func() { io.Copy(in, out); done <- struct{}{} }()
				<-done
			})
		}
	})
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// TestKubernetesLeaderKilledMidBake: two replicas against a real API
// server; the leader is killed while the canary wave bakes; the other
// takes the Lease, resumes the rollout from the MeshRollout's state and
// promotes it, and the canary proxy never goes back to the old revision.
func TestKubernetesLeaderKilledMidBake(t *testing.T) {
	cfg := startKubeAPI(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := "gitmesh-system"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad", http.StatusServiceUnavailable)
	}))
	t.Cleanup(bad.Close)
	v1, v2 := addr(e2etest.Backend(t, "v1")), addr(e2etest.Backend(t, "v2"))
	repo := e2etest.NewGitRemote(t)
	policy := killPolicy("4s")
	push := func(msg, routes string) string {
		return repo.Push(msg, canaryPolicy(v1, v2, addr(bad), routes, policy))
	}
	push("reviews: all to v1", allV1)

	var mu sync.Mutex // protects reps
	var reps []*replica
	svc := service(t, func() []*replica {
		mu.Lock()
		defer mu.Unlock()
		return append([]*replica(nil), reps...)
	})
	a := startReplica(t, cfg, ns, "replica-a", repo.URL)
	mu.Lock()
	reps = append(reps, a)
	mu.Unlock()
	e2etest.Eventually(t, 30*time.Second, "replica-a leads", func() string {
		if !a.c.Leading() {
			return "replica-a does not lead"
		}
		return ""
	})
	b := startReplica(t, cfg, ns, "replica-b", repo.URL)
	mu.Lock()
	reps = append(reps, b)
	mu.Unlock()
	if b.c.Leading() {
		t.Fatal("replica-b leads while replica-a holds the Lease")
	}

	outs := map[string]string{}
	for _, id := range killClients {
		labels := map[string]string{"app": "client"}
		if id == "client-1" {
			labels["wave"] = "one"
		}
		w := e2etest.RunProxy(t, svc, nodemeta.Workload{
			ID: id, Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar, Labels: labels, Outbound: testnet.FreeAddr(t),
		})
		outs[id] = w.Outbound
	}
	load := startLoad(t, outs, "reviews", 20*time.Millisecond)
	e2etest.Eventually(t, 30*time.Second, "every proxy serves v1", func() string {
		for _, id := range killClients {
			if got := load.latest(id); got != "v1" {
				return fmt.Sprintf("%s answers %q", id, got)
			}
		}
		return ""
	})

	sha := push("reviews: all to v2", allV2)
	e2etest.Eventually(t, 30*time.Second, "the canary wave bakes on replica-a", func() string {
		st := a.c.Reconciler.Status()
		if st.Rollout == nil || !strings.Contains(st.Rollout.Revision, sha) || st.Rollout.Phase != admin.PhaseBaking {
			return fmt.Sprintf("rollout %+v", st.Rollout)
		}
		if got := load.latest("client-1"); got != "v2" {
			return "client-1 answers " + got
		}
		return ""
	})
	switched := load.first("client-1", "v2")
	killed := time.Now()
	a.kill()

	e2etest.Eventually(t, 30*time.Second, "replica-b leads", func() string {
		if !b.c.Leading() {
			return "replica-b does not lead"
		}
		return ""
	})
	e2etest.Eventually(t, 60*time.Second, "replica-b promotes the rollout it resumed", func() string {
		st := b.c.Reconciler.Status()
		if st.Rollout == nil || !strings.Contains(st.Rollout.Revision, sha) || st.Rollout.Phase != admin.PhasePromoted {
			return fmt.Sprintf("rollout %+v", st.Rollout)
		}
		for _, id := range killClients {
			if got := load.latest(id); got != "v2" {
				return fmt.Sprintf("%s answers %q", id, got)
			}
		}
		return ""
	})
	t.Logf("leader killed %s after the canary switched; replica-b took over and promoted", killed.Sub(switched).Round(time.Millisecond))
	if h, err := b.c.Reconciler.History(0); err != nil || len(h) == 0 || h[0].ID != 2 {
		t.Errorf("replica-b's history = %+v, %v; want rollout 2 (resumed, not restarted) first", h, err)
	}
	for _, other := range []string{"v1", "status 503", "error"} {
		if at := load.firstAfter("client-1", other, switched); !at.IsZero() {
			t.Errorf("client-1 ran v2 from %s, then answered %q at %s (leader killed at %s): it regressed",
				switched.Format(time.RFC3339Nano), other, at.Format(time.RFC3339Nano), killed.Format(time.RFC3339Nano))
		}
	}

	// kubectl get meshrollouts: the new leader's view, promoted.
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	kc, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e2etest.Eventually(t, 10*time.Second, "the MeshRollout's status shows the promotion by replica-b", func() string {
		var mr v1alpha1.MeshRollout
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "gitmesh"}, &mr); err != nil {
			return err.Error()
		}
		st := mr.Status
		if st.Leader != "replica-b" || st.Phase != string(admin.PhasePromoted) || !strings.Contains(st.LastAppliedRevision, sha) {
			return fmt.Sprintf("leader %q phase %q revision %q", st.Leader, st.Phase, st.LastAppliedRevision)
		}
		return ""
	})
	// kubectl describe: both replicas' Events on the MeshRollout.
	e2etest.Eventually(t, 10*time.Second, "the Events of both leaders", func() string {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		have := map[string]string{}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == v1alpha1.KindMeshRollout {
				have[e.Reason] = e.Source.Host
			}
		}
		if have[kubestate.EventRolloutStarted] != "replica-a" || have[kubestate.EventPromoted] != "replica-b" {
			return fmt.Sprintf("events by reason and replica: %v", have)
		}
		return ""
	})
}

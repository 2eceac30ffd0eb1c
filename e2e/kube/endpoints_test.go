package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/registry/kube"
)

// reviewsPolicy routes every request for reviews.<ns> to subset v2, the
// pods labelled version=v2.
func reviewsPolicy(ns string) map[string]string {
	return map[string]string{"policy/reviews.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: %[1]s}
spec:
  host: reviews.%[1]s.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: %[1]s}
spec:
  hosts: [reviews.%[1]s.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.%[1]s.svc.cluster.local, subset: v2}
`, ns)}
}

func atoi32(s string) int32 {
	var n int32
	fmt.Sscan(s, &n)
	return n
}

// policyTypes are the types an endpoint change must not re-send.
var policyTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType}

// onlyEndpointsChanged compares a proxy's applied versions before and
// after: "" when only EDS changed.
func onlyEndpointsChanged(before, after map[string]string) string {
	for _, typ := range policyTypes {
		if before[typ] != after[typ] {
			return fmt.Sprintf("%s version changed %q -> %q", typ, before[typ], after[typ])
		}
	}
	if before[resource.EndpointType] == after[resource.EndpointType] {
		return fmt.Sprintf("EDS version still %q", after[resource.EndpointType])
	}
	return ""
}

// splitLabel splits a version label "<policy version>.<endpoints version>".
func splitLabel(label string) (policy, eds string) {
	i := strings.LastIndex(label, ".")
	if i < 0 {
		return label, ""
	}
	return label[:i], label[i+1:]
}

// TestKubernetesEndpoints: Service reviews has pods v1, v2a and v2b in
// the API server, its EndpointSlices point at real backends on testAddrs
// (v2a and v2b on one port, each pod on its own address); the VirtualService in Git sends everything to subset v2.
// Traffic goes to the v2 pods only; adding an endpoint to the v2 slice
// spreads traffic over both v2 pods and changes only the EDS version; an
// endpoint going unready (condition ready=false) leaves the rotation; a
// pod relabelled into the subset joins it (endpoint labels are the pod's).
func TestKubernetesEndpoints(t *testing.T) {
	k := newCluster(t)
	host := "reviews." + k.ns + ".svc.cluster.local"
	v1 := e2etest.BackendAt(t, testAddrs[2]+":0", "v1") // a pod has an address of its own
	v2a := e2etest.BackendAt(t, testAddrs[0]+":0", "v2a")
	e2etest.BackendAt(t, testAddrs[1]+":"+e2etest.PortOf(v2a), "v2b") // one slice: the same port on another address
	p1, p2 := atoi32(e2etest.PortOf(v1)), atoi32(e2etest.PortOf(v2a))

	k.service("reviews", 9080)
	k.pod("reviews-v1", map[string]string{"app": "reviews", "version": "v1"})
	k.pod("reviews-v2a", map[string]string{"app": "reviews", "version": "v2"})
	k.pod("reviews-v2b", map[string]string{"app": "reviews", "version": "v2"})
	k.endpointSlice("reviews-v1", "reviews", p1, endpoint{testAddrs[2], "reviews-v1", true})
	k.endpointSlice("reviews-v2", "reviews", p2, endpoint{testAddrs[0], "reviews-v2a", true})

	repo := e2etest.NewGitRemote(t)
	repo.Push("route reviews to v2", reviewsPolicy(k.ns))
	c := startController(t, repo.URL, 0)
	w := sidecar(t, c.XDSAddr, k.ns, "client-1")

	e2etest.Eventually(t, 30*time.Second, "traffic to subset v2 (pod reviews-v2a)", func() string {
		if got := e2etest.Split(w.Outbound, host, 20); got["v2a"] != 20 {
			return fmt.Sprintf("answers %v; want v2a only (status: %+v)", got, c.Reconciler.Status().Conditions)
		}
		return ""
	})
	before, label := appliedVersions(t, w.Admin), proxyStatus(c, w.ID).Acked

	t.Run("scaling the EndpointSlice re-sends only endpoints", func(t *testing.T) {
		changed := time.Now()
		k.endpointSlice("reviews-v2", "reviews", p2,
			endpoint{testAddrs[0], "reviews-v2a", true}, endpoint{testAddrs[1], "reviews-v2b", true})
		e2etest.Eventually(t, 30*time.Second, "the proxy runs the new endpoints", func() string {
			if p := proxyStatus(c, w.ID); p.Acked == label || p.Acked != p.Assigned {
				return fmt.Sprintf("acked %q, assigned %q, before %q", p.Acked, p.Assigned, label)
			}
			return ""
		})
		t.Logf("EndpointSlice update to the proxy's ACK: %s (debounce %s)", time.Since(changed).Round(time.Millisecond), kube.DefaultDebounce)
		e2etest.Eventually(t, 30*time.Second, "traffic over both v2 pods", func() string {
			got := e2etest.Split(w.Outbound, host, 40)
			if got["v2a"] == 0 || got["v2b"] == 0 || got["v2a"]+got["v2b"] != 40 {
				return fmt.Sprintf("answers %v; want v2a and v2b only", got)
			}
			return ""
		})
		after := proxyStatus(c, w.ID).Acked
		pb, eb := splitLabel(label)
		if pa, ea := splitLabel(after); pa != pb || ea == eb {
			t.Errorf("acked label %q -> %q; want the policy part unchanged and the endpoints part changed", label, after)
		}
		now := appliedVersions(t, w.Admin)
		if why := onlyEndpointsChanged(before, now); why != "" {
			t.Errorf("proxy's applied versions: %s", why)
		}
		before, label = now, after
	})

	t.Run("an unready endpoint leaves the rotation", func(t *testing.T) {
		k.endpointSlice("reviews-v2", "reviews", p2,
			endpoint{testAddrs[0], "reviews-v2a", false}, endpoint{testAddrs[1], "reviews-v2b", true})
		e2etest.Eventually(t, 30*time.Second, "traffic to reviews-v2b only", func() string {
			if got := e2etest.Split(w.Outbound, host, 20); got["v2b"] != 20 {
				return fmt.Sprintf("answers %v; want v2b only", got)
			}
			return ""
		})
		now := appliedVersions(t, w.Admin)
		if why := onlyEndpointsChanged(before, now); why != "" {
			t.Errorf("proxy's applied versions: %s", why)
		}
		before = now
	})

	t.Run("a pod relabelled version=v2 joins the subset", func(t *testing.T) {
		ctx, cancel := k.ctx()
		defer cancel()
		pod, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, "reviews-v1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Labels["version"] = "v2"
		if _, err := k.cs.CoreV1().Pods(k.ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("relabelling pod: %v", err)
		}
		e2etest.Eventually(t, 30*time.Second, "traffic over reviews-v1 (now version=v2) and reviews-v2b", func() string {
			got := e2etest.Split(w.Outbound, host, 40)
			if got["v1"] == 0 || got["v2b"] == 0 || got["v1"]+got["v2b"] != 40 {
				return fmt.Sprintf("answers %v; want v1 and v2b", got)
			}
			return ""
		})
		if why := onlyEndpointsChanged(before, appliedVersions(t, w.Admin)); why != "" {
			t.Errorf("proxy's applied versions: %s", why)
		}
	})
}

// TestKubernetesResyncPushesNothing: informer resyncs (every second, the
// least client-go allows) and a Pod update nothing reads rebuild the
// registry but publish nothing: the registry's version, the proxy's
// assigned label and its applied versions stay as they were.
func TestKubernetesResyncPushesNothing(t *testing.T) {
	k := newCluster(t)
	host := "reviews." + k.ns + ".svc.cluster.local"
	v2 := e2etest.BackendAt(t, testAddrs[0]+":0", "v2")
	k.service("reviews", 9080)
	k.pod("reviews-v2", map[string]string{"app": "reviews", "version": "v2"})
	k.endpointSlice("reviews-v2", "reviews", atoi32(e2etest.PortOf(v2)), endpoint{testAddrs[0], "reviews-v2", true})
	repo := e2etest.NewGitRemote(t)
	repo.Push("route reviews to v2", reviewsPolicy(k.ns))
	c := startController(t, repo.URL, time.Second)
	w := sidecar(t, c.XDSAddr, k.ns, "client-1")
	e2etest.Eventually(t, 30*time.Second, "traffic to subset v2", func() string {
		if got := e2etest.Split(w.Outbound, host, 5); got["v2"] != 5 {
			return fmt.Sprintf("answers %v; want v2 only", got)
		}
		return ""
	})
	e2etest.Eventually(t, 10*time.Second, "the proxy is synced", func() string {
		if p := proxyStatus(c, w.ID); p.Acked == "" || p.Acked != p.Assigned {
			return fmt.Sprintf("acked %q, assigned %q", p.Acked, p.Assigned)
		}
		return ""
	})
	version, builds := c.Registry.Version(), c.Registry.Builds()
	assigned, applied := proxyStatus(c, w.ID).Assigned, appliedVersions(t, w.Admin)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pod, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, "reviews-v2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Annotations = map[string]string{"example.com/touched": "yes"}
	if _, err := k.cs.CoreV1().Pods(k.ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating pod: %v", err)
	}
	e2etest.Eventually(t, 10*time.Second, "several rebuilds (resyncs and the pod update)", func() string {
		if n := c.Registry.Builds(); n < builds+3 {
			return fmt.Sprintf("%d rebuilds since; want 3", n-builds)
		}
		return ""
	})
	if got := c.Registry.Version(); got != version {
		t.Errorf("registry version %s -> %s; want unchanged", version, got)
	}
	if got := proxyStatus(c, w.ID).Assigned; got != assigned {
		t.Errorf("proxy assigned %q -> %q; want unchanged", assigned, got)
	}
	now := appliedVersions(t, w.Admin)
	for typ, v := range applied {
		if now[typ] != v {
			t.Errorf("proxy's %s version %q -> %q; want unchanged", typ, v, now[typ])
		}
	}
}

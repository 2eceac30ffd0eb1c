package kube

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/registry"
)

// TestKubernetesExportTo: Service ratings carries Istio's exportTo
// annotation "."; a sidecar of its namespace reaches it, a sidecar of
// another namespace does not. Removing the annotation exports it
// everywhere again.
func TestKubernetesExportTo(t *testing.T) {
	k, other := newCluster(t), newCluster(t)
	host := "ratings." + k.ns + ".svc.cluster.local"
	b := e2etest.BackendAt(t, testAddrs[3]+":0", "ratings")
	k.service("ratings", 9080)
	k.pod("ratings-1", map[string]string{"app": "ratings"})
	k.endpointSlice("ratings-1", "ratings", atoi32(e2etest.PortOf(b)), endpoint{testAddrs[3], "ratings-1", true})
	setExportTo := func(v string) {
		t.Helper()
		ctx, cancel := k.ctx()
		defer cancel()
		svc, err := k.cs.CoreV1().Services(k.ns).Get(ctx, "ratings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Annotations = map[string]string{}
		if v != "" {
			svc.Annotations[registry.ExportToAnnotation] = v
		}
		if _, err := k.cs.CoreV1().Services(k.ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("annotating service: %v", err)
		}
	}
	setExportTo(".")

	repo := e2etest.NewGitRemote(t)
	repo.Push("ratings subsets", map[string]string{"policy/ratings.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: %[1]s}
spec:
  host: %[2]s
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
`, k.ns, host)})
	c := startController(t, repo.URL, 0)
	inside := sidecar(t, c.XDSAddr, k.ns, "inside-1")
	outside := sidecar(t, c.XDSAddr, other.ns, "outside-1")

	e2etest.Eventually(t, 30*time.Second, "ratings reachable from its own namespace", func() string {
		if got := e2etest.Split(inside.Outbound, host, 5); got["ratings"] != 5 {
			return fmt.Sprintf("answers %v; want ratings", got)
		}
		return ""
	})
	e2etest.Eventually(t, 30*time.Second, "the other namespace's sidecar is synced", func() string {
		if p := proxyStatus(c, outside.ID); p.Acked == "" || p.Acked != p.Assigned {
			return fmt.Sprintf("acked %q, assigned %q", p.Acked, p.Assigned)
		}
		return ""
	})
	if got := e2etest.Split(outside.Outbound, host, 5); got["ratings"] != 0 {
		t.Errorf("from namespace %s (not exported to): answers %v; want none from ratings", other.ns, got)
	}

	setExportTo("")
	e2etest.Eventually(t, 30*time.Second, "ratings reachable from the other namespace once exported to all", func() string {
		if got := e2etest.Split(outside.Outbound, host, 5); got["ratings"] != 5 {
			return fmt.Sprintf("answers %v; want ratings", got)
		}
		return ""
	})
}

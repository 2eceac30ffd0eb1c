package kube

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/faultnet"
)

// TestKubernetesAPIServerDown: the controller reaches the API server
// through a TCP switch. With the switch closed (connections reset, new
// ones refused) the cluster changes unseen: the proxies keep the
// endpoints they had, never an empty registry. Once the switch is back,
// the informers relist and the change made meanwhile arrives.
func TestKubernetesAPIServerDown(t *testing.T) {
	k := newCluster(t)
	host := "reviews." + k.ns + ".svc.cluster.local"
	v2a := e2etest.BackendAt(t, testAddrs[0]+":0", "v2a")
	e2etest.BackendAt(t, testAddrs[1]+":"+e2etest.PortOf(v2a), "v2b")
	p2 := atoi32(e2etest.PortOf(v2a))
	k.service("reviews", 9080)
	k.pod("reviews-v2a", map[string]string{"app": "reviews", "version": "v2"})
	k.pod("reviews-v2b", map[string]string{"app": "reviews", "version": "v2"})
	k.endpointSlice("reviews-v2", "reviews", p2, endpoint{testAddrs[0], "reviews-v2a", true})

	u, err := url.Parse(apiServer.Host)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := faultnet.NewSwitch("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	swAddr := sw.Addr()
	t.Cleanup(func() { sw.Close() })
	via := rest.CopyConfig(apiServer)
	via.Host = "https://" + swAddr

	repo := e2etest.NewGitRemote(t)
	repo.Push("route reviews to v2", reviewsPolicy(k.ns))
	c := startControllerWith(t, repo.URL, via)
	w := sidecar(t, c.XDSAddr, k.ns, "client-1")
	e2etest.Eventually(t, 30*time.Second, "traffic to reviews-v2a", func() string {
		if got := e2etest.Split(w.Outbound, host, 10); got["v2a"] != 10 {
			return fmt.Sprintf("answers %v; want v2a only", got)
		}
		return ""
	})

	sw.Close() // the API server is gone for the controller
	k.endpointSlice("reviews-v2", "reviews", p2,
		endpoint{testAddrs[0], "reviews-v2a", true}, endpoint{testAddrs[1], "reviews-v2b", true})
	if got := e2etest.Split(w.Outbound, host, 20); got["v2a"] != 20 {
		t.Fatalf("with the API server unreachable: answers %v; want v2a only, as before", got)
	}

	sw, err = faultnet.NewSwitch(swAddr, u.Host) // back on the same address
	if err != nil {
		t.Fatalf("restoring the switch: %v", err)
	}
	e2etest.Eventually(t, 60*time.Second, "the change made while unreachable arrives", func() string {
		got := e2etest.Split(w.Outbound, host, 20)
		if got["v2a"] == 0 || got["v2b"] == 0 || got["v2a"]+got["v2b"] != 20 {
			return fmt.Sprintf("answers %v; want v2a and v2b", got)
		}
		return ""
	})
}

package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

func lbPolicy(p clusterv3.Cluster_LbPolicy) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) { c.LbPolicy = p }
}

func hashHeaderPolicy(name string) *routev3.RouteAction_HashPolicy {
	return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: name}}}
}

func TestLoadBalancing(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	var backends []string
	for i := range 3 {
		backends = append(backends, hostPort(echo(t, fmt.Sprintf("e%d", i), nil)))
	}
	cookie := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{
		Name: "session", Ttl: dur(3600_000_000_000), Path: "/",
	}}}
	sourceIP := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
		ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
	}}
	query := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
		QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "user"},
	}}
	type tcase struct {
		name   string
		policy clusterv3.Cluster_LbPolicy
		hash   []*routev3.RouteAction_HashPolicy
		mutate func(*clusterv3.Cluster)
		check  func(t *testing.T, host string)
	}
	ringMin := func(c *clusterv3.Cluster) {
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(64)}}
	}
	maglevSize := func(c *clusterv3.Cluster) {
		c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(251)}}
	}
	distribution := func(n int, lo, hi float64) func(t *testing.T, host string) {
		return func(t *testing.T, host string) {
			counts := map[string]int{}
			for range n {
				resp, _ := r.get("GET", host, "/", nil)
				counts[backendOf(resp)]++
			}
			for i := range 3 {
				share := float64(counts[fmt.Sprintf("e%d", i)]) / float64(n)
				if share < lo || share > hi {
					t.Errorf("share of e%d = %.3f (%v); want %.2f-%.2f", i, share, counts, lo, hi)
				}
			}
		}
	}
	sticky := func(key func(i int) (string, map[string]string)) func(t *testing.T, host string) {
		return func(t *testing.T, host string) {
			seen := map[string]bool{}
			for i := range 30 {
				path, hdr := key(i)
				var first string
				for j := range 5 {
					resp, _ := r.get("GET", host, path, hdr)
					if j == 0 {
						first = backendOf(resp)
					} else if got := backendOf(resp); got != first {
						t.Fatalf("key %d moved from %s to %s", i, first, got)
					}
				}
				seen[first] = true
			}
			if len(seen) < 2 {
				t.Errorf("30 keys all went to %v; want them spread", seen)
			}
		}
	}
	tests := []tcase{
		{name: "round robin", policy: clusterv3.Cluster_ROUND_ROBIN, check: distribution(30, 0.33, 0.34)},
		{name: "random", policy: clusterv3.Cluster_RANDOM, check: distribution(600, 0.25, 0.42)},
		{name: "least request", policy: clusterv3.Cluster_LEAST_REQUEST, check: distribution(600, 0.25, 0.42)},
		{name: "ring hash on a header", policy: clusterv3.Cluster_RING_HASH, hash: []*routev3.RouteAction_HashPolicy{hashHeaderPolicy("x-user")}, mutate: ringMin,
			check: sticky(func(i int) (string, map[string]string) {
				return "/", map[string]string{"X-User": fmt.Sprint("user-", i)}
			})},
		{name: "maglev on a query parameter", policy: clusterv3.Cluster_MAGLEV, hash: []*routev3.RouteAction_HashPolicy{query}, mutate: maglevSize,
			check: sticky(func(i int) (string, map[string]string) { return fmt.Sprintf("/?user=u%d", i), nil })},
		{name: "maglev on source ip", policy: clusterv3.Cluster_MAGLEV, hash: []*routev3.RouteAction_HashPolicy{sourceIP}, check: func(t *testing.T, host string) {
			resp, _ := r.get("GET", host, "/", nil)
			first := backendOf(resp)
			for range 20 {
				if resp, _ := r.get("GET", host, "/", nil); backendOf(resp) != first {
					t.Fatalf("source ip moved from %s to %s", first, backendOf(resp))
				}
			}
		}},
		{name: "ring hash on a generated cookie", policy: clusterv3.Cluster_RING_HASH, hash: []*routev3.RouteAction_HashPolicy{cookie}, check: func(t *testing.T, host string) {
			resp, _ := r.get("GET", host, "/", nil)
			set := resp.Header.Get("Set-Cookie")
			if !strings.HasPrefix(set, `session="`) || !strings.Contains(set, "Max-Age=3600") || !strings.Contains(set, "Path=/") {
				t.Fatalf("Set-Cookie = %q; want a generated session cookie", set)
			}
			value := strings.Split(strings.TrimPrefix(set, `session="`), `"`)[0]
			first := backendOf(resp)
			for range 20 {
				resp, _ := r.get("GET", host, "/", map[string]string{"Cookie": "session=" + value})
				if backendOf(resp) != first || resp.Header.Get("Set-Cookie") != "" {
					t.Fatalf("cookie %s went to %s (first %s), Set-Cookie %q", value, backendOf(resp), first, resp.Header.Get("Set-Cookie"))
				}
			}
		}},
	}
	var res []types.Resource
	var vhosts []*routev3.VirtualHost
	for i, tt := range tests {
		name := fmt.Sprintf("outbound|80||lb%d.default.svc.cluster.local", i)
		mut := []func(*clusterv3.Cluster){lbPolicy(tt.policy)}
		if tt.mutate != nil {
			mut = append(mut, tt.mutate)
		}
		res = append(res, staticCluster(t, name, fmt.Sprintf("lb%d.default.svc.cluster.local", i), backends, mut...))
		rt := toCluster(prefixMatch("/"), name)
		rt.GetRoute().HashPolicy = tt.hash
		vhosts = append(vhosts, vhost(name, []string{fmt.Sprintf("lb%d", i)}, rt))
	}
	r.push(append(res, r.outboundHTTP(vhosts...)...)...)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, fmt.Sprintf("lb%d", i)) })
	}
}

// TestConsistentHashKeepsKeys: removing a host moves the keys that were on
// it and few others. Envoy's ring and table are rebuilt for the new host
// set (the ring's minimum size is shared by fewer hosts, which each get
// more points), so some keys move between remaining hosts: about 17% for
// the ring here, against 75% for a modulo hash.
func TestConsistentHashKeepsKeys(t *testing.T) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			r := newRig(t, nodemeta.RoleSidecar)
			var backends []string
			for i := range 4 {
				backends = append(backends, hostPort(echo(t, fmt.Sprintf("e%d", i), nil)))
			}
			const c = "outbound|80||ch.default.svc.cluster.local"
			rt := toCluster(prefixMatch("/"), c)
			rt.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{hashHeaderPolicy("x-user")}
			push := func(eps []string) map[string]string {
				r.push(append(r.outboundHTTP(vhost("ch", []string{"ch"}, rt)), staticCluster(t, c, "ch.default.svc.cluster.local", eps, lbPolicy(policy)))...)
				out := map[string]string{}
				for i := range 100 {
					key := fmt.Sprint("k", i)
					resp, _ := r.get("GET", "ch", "/", map[string]string{"X-User": key})
					out[key] = backendOf(resp)
				}
				return out
			}
			before := push(backends)
			after := push(backends[:3]) // e3 removed
			moved := 0
			for k, b := range before {
				if b != "e3" && after[k] != b {
					moved++
				}
			}
			if moved > 35 {
				t.Errorf("%d of 100 keys not on the removed host moved; want at most 35", moved)
			}
		})
	}
}

// TestLeastRequestAvoidsBusyHost: a host holding requests gets few new ones.
func TestLeastRequestAvoidsBusyHost(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	release := make(chan struct{})
	busy := echo(t, "busy", func(w http.ResponseWriter, req *http.Request) bool {
		if req.URL.Path == "/hold" {
			<-release
		}
		return false
	})
	idle := echo(t, "idle", nil)
	const c = "outbound|80||lr.default.svc.cluster.local"
	r.push(append(r.outboundHTTP(vhost("lr", []string{"lr"}, toCluster(prefixMatch("/"), c))),
		staticCluster(t, c, "lr.default.svc.cluster.local", []string{hostPort(busy), hostPort(idle)}, lbPolicy(clusterv3.Cluster_LEAST_REQUEST), func(cl *clusterv3.Cluster) {
			cl.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(4)}}
		}))...)
	// Send /hold requests until the busy host holds some: the balancer may
	// give any of them to the idle host, which answers at once.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	hold := func() {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", "http://"+r.out+"/hold", nil)
			req.Host = "lr"
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, 10e9, func() error {
		for _, e := range r.proxy.current.Load().Clusters[c].Endpoints.Endpoints {
			if e.Addr == hostPort(busy) && e.State.Active.Load() >= 3 {
				return nil
			}
		}
		hold()
		return fmt.Errorf("busy host holds fewer than 3 requests yet")
	})
	counts := map[string]int{}
	for range 200 {
		resp, _ := r.get("GET", "lr", "/", nil)
		counts[backendOf(resp)]++
	}
	if share := float64(counts["busy"]) / 200; share > 0.2 {
		t.Errorf("busy host got %.2f of new requests (%v); want at most 0.2", share, counts)
	}
}

package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyRoundTrip measures one keep-alive HTTP/1.1 request through
// the outbound listener to a loopback backend (routing, balancing,
// forwarding and metrics included).
func BenchmarkProxyRoundTrip(b *testing.B) {
	m := newMesh(b)
	req, err := http.NewRequest("GET", "http://"+m.out+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = "reviews"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := m.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkRouteLookup measures virtual host and route matching alone.
func BenchmarkRouteLookup(b *testing.B) {
	m := newMesh(b)
	lc := m.proxy.current.Load().Listeners[m.out]
	req, _ := http.NewRequest("GET", "http://reviews.default.svc.cluster.local:9080/api/v1/products", nil)
	b.ReportAllocs()
	for b.Loop() {
		vh := lc.Chains[0].HTTP.Routes.FindVirtualHost(req.Host)
		if vh.FindRoute(req).PickCluster().Cluster.Pick(nil) == nil {
			b.Fatal("no endpoint")
		}
	}
}

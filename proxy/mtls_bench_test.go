package proxy

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkMTLS measures keep-alive HTTP/1.1 requests through two proxies
// (client sidecar outbound, server sidecar inbound, app), in plaintext
// and over ISTIO_MUTUAL, in the same run. It reports requests per second
// and the 99th percentile latency.
func BenchmarkMTLS(b *testing.B) {
	for _, bm := range []struct {
		name   string
		meshed bool
	}{{"plain", false}, {"mtls", true}} {
		b.Run(bm.name, func(b *testing.B) {
			m := newMeshPair(b, "PERMISSIVE")
			m.meshed = bm.meshed
			m.push()
			if resp, _, err := m.get(); err != nil || resp.StatusCode != 200 {
				b.Fatalf("warm-up: %v %v", resp, err)
			}
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				local := make([]time.Duration, 0, 1024)
				for pb.Next() {
					t0 := time.Now()
					resp, _, err := m.get()
					if err != nil || resp.StatusCode != 200 {
						b.Errorf("request: %v %v", resp, err)
						return
					}
					local = append(local, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)*99/100])/float64(time.Millisecond), "p99-ms")
		})
	}
}

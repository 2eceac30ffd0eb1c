package sds_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/sds"
)

// BenchmarkIssueFleet measures issuing and pushing certificates to 100
// connected nodes (each iteration is a root rotation's phase 2 for the
// whole fleet).
func BenchmarkIssueFleet(b *testing.B) {
	t := b
	s, addr := startXDS(t)
	const fleet = 100
	m := startManager(t, s, newAuthority(t), sds.WithRootStore(&memStore{}), sds.WithAckTimeout(30*time.Second))
	for i := range fleet {
		p := connect(t, addr, sidecar(fmt.Sprintf("n%03d", i), "shop", "cart"))
		go func() {
			for range p.resps {
				p.ack <- true
			}
		}()
	}
	waitStatus(t, m, "fleet issued", func(st admin.CAStatus) bool { return st.Workloads == fleet })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := m.Rotate(context.Background())
		if err != nil || len(res.ReissuePending) > 0 || len(res.BundlePending) > 0 {
			b.Fatalf("Rotate = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/rotation")
}

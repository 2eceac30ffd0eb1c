package kube

import (
	"fmt"
	"testing"
)

// BenchmarkBuild measures a rebuild with its hash, what every burst of
// informer events costs: 500 Services with 10 ready pods each.
func BenchmarkBuild(b *testing.B) {
	var s Snapshot
	for i := range 500 {
		ns, name := fmt.Sprintf("ns-%d", i%20), fmt.Sprintf("svc-%d", i)
		s.Services = append(s.Services, service(ns, name, nil))
		var eps []ep
		for j := range 10 {
			addr, pn := fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1), fmt.Sprintf("%s-%d", name, j)
			s.Pods = append(s.Pods, pod(ns, pn, addr, map[string]string{"app": name, "version": fmt.Sprintf("v%d", j%2+1)}))
			eps = append(eps, ep{addr, ptr(true), pn})
		}
		s.EndpointSlices = append(s.EndpointSlices, slice(ns, name+"-abc", name, 8080, eps...))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(Build(s))
	}
}

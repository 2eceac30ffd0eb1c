package compiler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
	"github.com/gitmesh/gitmesh/sources"
)

// scaleClass is the reconciler's probe class: a sidecar in the default
// namespace.
var scaleClass = nodemeta.SidecarClass(meshgen.Namespace, "")

// compileAll is what the reconciler runs on a revision: Parse, then
// Compile for the (single) proxy class.
func compileAll(b *testing.B, objs []sources.Object, opts ...compiler.Option) {
	opts = append([]compiler.Option{compiler.WithDefaultNamespace(meshgen.Namespace)}, opts...)
	p, diags := compiler.Parse(objs, opts...)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	if _, err := p.Compile(scaleClass, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCompileServices is a full compile of the synthetic meshes of
// make bench (each service: a ServiceEntry with 3 endpoints, a
// DestinationRule with 2 subsets, a VirtualService with 3 routes).
//
//	go test -run '^$' -bench CompileServices -benchmem ./compiler/
func BenchmarkCompileServices(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			objs, err := meshgen.Objects(b.TempDir(), n, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := startCPU(b)
			for range b.N {
				compileAll(b, objs)
			}
			cpu.report(b)
		})
	}
}

// BenchmarkRecompileOneVS is the recompile after a commit that changed one
// VirtualService of each synthetic mesh: Parse + Compile of the whole
// revision with the compiler.Cache the previous revisions filled, as the
// reconciler does. BenchmarkRecompileOneVSCold is the same without a
// Cache.
//
//	go test -run '^$' -bench RecompileOneVS -benchmem ./compiler/
func BenchmarkRecompileOneVS(b *testing.B) {
	benchmarkRecompile(b, compiler.WithCache(compiler.NewCache()))
}

// BenchmarkRecompileOneVSCold is BenchmarkRecompileOneVS without a Cache.
func BenchmarkRecompileOneVSCold(b *testing.B) {
	benchmarkRecompile(b)
}

func benchmarkRecompile(b *testing.B, opts ...compiler.Option) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			objs, err := meshgen.Objects(b.TempDir(), n, 0)
			if err != nil {
				b.Fatal(err)
			}
			compileAll(b, objs, opts...)
			gens := make([][]sources.Object, 2)
			for g := range gens {
				if gens[g], err = meshgen.Replace(b.TempDir(), objs, n/2, g+1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for _, g := range gens {
				compileAll(b, g, opts...) // warms a Cache as earlier revisions would
			}
			cpu := startCPU(b)
			for i := range b.N {
				compileAll(b, gens[i%2], opts...)
			}
			cpu.report(b)
		})
	}
}

// cpuMeter measures the CPU time a benchmark's loop uses on all threads
// (garbage collection included), which a machine shared with other work
// disturbs far less than the time per operation.
type cpuMeter struct{ start time.Duration }

// startCPU resets b's timer and starts measuring.
func startCPU(b *testing.B) cpuMeter {
	b.ResetTimer()
	return cpuMeter{processCPU()}
}

// report adds the CPU milliseconds per operation to b's results
// ("cpu-ms/op").
func (m cpuMeter) report(b *testing.B) {
	b.StopTimer()
	if used := processCPU() - m.start; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	}
}

package compiler_test

import (
	"fmt"
	"testing"

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
			b.ResetTimer()
			for range b.N {
				compileAll(b, objs)
			}
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
			b.ResetTimer()
			for _, g := range gens {
				compileAll(b, g, opts...) // warms a Cache as earlier revisions would
			}
			b.ResetTimer()
			for i := range b.N {
				compileAll(b, gens[i%2], opts...)
			}
		})
	}
}

package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
	"github.com/gitmesh/gitmesh/sources"
)

// CompilerResult is one mesh size's compile figures.
type CompilerResult struct {
	Services int `json:"services"`
	Objects  int `json:"objects"`
	// Parse, Compile and Full (their sum) are the full compile of the mesh
	// for one sidecar class, the median of Runs runs.
	ParseMS   float64 `json:"parse_ms"`
	CompileMS float64 `json:"compile_ms"`
	FullMS    float64 `json:"full_ms"`
	// AllocMB is the heap allocated by one full compile (cumulative);
	// PeakHeapMB the live heap's peak above the heap before it, sampled
	// every 2 ms.
	AllocMB    float64 `json:"alloc_mb"`
	PeakHeapMB float64 `json:"peak_heap_mb"`
	// RecompileMS is Parse + Compile after one VirtualService changed
	// (what the reconciler runs on a commit), with the compiler.Cache the
	// previous revision filled, as the reconciler keeps one; the median
	// of Runs runs. CacheMB is the live heap that Cache holds after the
	// previous revision.
	RecompileMS float64 `json:"recompile_ms"`
	CacheMB     float64 `json:"cache_mb"`
	Runs        int     `json:"runs"`
}

// compilerClass is the sidecar class every compile is for, the reconciler's
// probe class (a sidecar in the default namespace).
var compilerClass = nodemeta.SidecarClass(meshgen.Namespace, "")

// runCompiler compiles meshes of each size in sizes.
func runCompiler(ctx context.Context, tmp string, sizes []int, runs int, logf func(string, ...any)) ([]CompilerResult, error) {
	var out []CompilerResult
	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r, err := compileSize(tmp, n, runs)
		if err != nil {
			return out, fmt.Errorf("compiling %d services: %w", n, err)
		}
		logf("compiler: %d services: full %.0f ms (parse %.0f, compile %.0f), alloc %.0f MB, peak heap %.0f MB, recompile %.1f ms (cache %.0f MB)",
			n, r.FullMS, r.ParseMS, r.CompileMS, r.AllocMB, r.PeakHeapMB, r.RecompileMS, r.CacheMB)
		out = append(out, r)
	}
	return out, nil
}

// compileSize measures one mesh size.
func compileSize(tmp string, n, runs int) (CompilerResult, error) {
	objs, err := meshgen.Objects(tmp, n, 0)
	if err != nil {
		return CompilerResult{}, err
	}
	r := CompilerResult{Services: n, Objects: len(objs), Runs: runs}
	var parse, comp, full, re []float64
	for k := range runs {
		runtime.GC()
		before := heapStats()
		peak := samplePeak()
		t0 := time.Now()
		p, err := parseAndCheck(objs, nil)
		if err != nil {
			peak()
			return r, err
		}
		t1 := time.Now()
		if _, err := p.Compile(compilerClass, nil); err != nil {
			peak()
			return r, fmt.Errorf("compiling: %w", err)
		}
		t2 := time.Now()
		top := peak()
		after := heapStats()
		parse = append(parse, ms(t1.Sub(t0)))
		comp = append(comp, ms(t2.Sub(t1)))
		full = append(full, ms(t2.Sub(t0)))
		if k == 0 {
			r.AllocMB = float64(after.alloc-before.alloc) / 1e6
			r.PeakHeapMB = float64(top-before.live) / 1e6
		}
		changed, err := meshgen.Replace(tmp, objs, n/2, k+1)
		if err != nil {
			return r, err
		}
		runtime.GC()
		base := heapStats()
		cache := compiler.NewCache()
		if err := parseAndCompile(objs, cache); err != nil {
			return r, err
		}
		runtime.GC()
		if k == 0 {
			r.CacheMB = float64(heapStats().live-base.live) / 1e6
		}
		t3 := time.Now()
		if err := parseAndCompile(changed, cache); err != nil {
			return r, fmt.Errorf("recompiling: %w", err)
		}
		re = append(re, ms(time.Since(t3)))
	}
	r.ParseMS, r.CompileMS, r.FullMS, r.RecompileMS = median(parse), median(comp), median(full), median(re)
	return r, nil
}

// parseAndCompile parses objs with cache and compiles them for
// compilerClass.
func parseAndCompile(objs []sources.Object, cache *compiler.Cache) error {
	p, err := parseAndCheck(objs, cache)
	if err != nil {
		return err
	}
	if _, err := p.Compile(compilerClass, nil); err != nil {
		return fmt.Errorf("compiling: %w", err)
	}
	return nil
}

// parseAndCheck parses objs as the reconciler does (with cache, when not
// nil) and fails on error diagnostics.
func parseAndCheck(objs []sources.Object, cache *compiler.Cache) (*compiler.Policy, error) {
	p, diags := compiler.Parse(objs, compiler.WithDefaultNamespace(meshgen.Namespace), compiler.WithCache(cache))
	if diags.HasErrors() {
		return nil, fmt.Errorf("parsing: %v", diags)
	}
	return p, nil
}

type heap struct{ alloc, live uint64 }

var heapMetrics = []string{"/gc/heap/allocs:bytes", "/memory/classes/heap/objects:bytes"}

// heapStats reads cumulative heap allocation and the live heap cheaply
// (runtime/metrics does not stop the world).
func heapStats() heap {
	s := []metrics.Sample{{Name: heapMetrics[0]}, {Name: heapMetrics[1]}}
	metrics.Read(s)
	return heap{alloc: s[0].Value.Uint64(), live: s[1].Value.Uint64()}
}

// samplePeak samples the live heap every 2 ms until the returned function
// is called, which returns the highest value seen.
func samplePeak() func() uint64 {
	done := make(chan struct{})
	res := make(chan uint64, 1)
	go func() {
		top := heapStats().live
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				if l := heapStats().live; l > top {
					top = l
				}
				res <- top
				return
			case <-t.C:
				if l := heapStats().live; l > top {
					top = l
				}
			}
		}
	}()
	return func() uint64 { close(done); return <-res }
}

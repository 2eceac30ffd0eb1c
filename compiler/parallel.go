package compiler

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelMin is the number of items below which parallelFor stays on
// the calling goroutine: fewer are not worth the goroutines.
const parallelMin = 64

// parallelFor calls f(i) for every i in [0, n), on up to GOMAXPROCS
// goroutines, and returns when all calls have returned. f must only
// write to what index i owns, so that the result does not depend on the
// schedule.
func parallelFor(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/parallelMin+1)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

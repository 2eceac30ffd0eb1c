// Command gitmesh-bench is gitmesh's benchmark harness (make bench): see
// docs/performance.md. "gitmesh-bench adsload" is its ADS load client,
// which the harness runs as a separate process.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gitmesh/gitmesh/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "adsload" {
		err = adsloadMain(ctx, os.Args[2:])
	} else {
		err = benchMain(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gitmesh-bench:", err)
		os.Exit(1)
	}
}

func benchMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gitmesh-bench", flag.ContinueOnError)
	parts := fs.String("bench", "", "parts to run, comma-separated: dataplane, compiler, controlplane (default all)")
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "smoke run of every part (default $BENCH_QUICK=1)")
	results := fs.String("results", "bench-results", "directory for results.json and table.txt")
	plots := fs.String("plots", "docs/performance", "directory for the PNG plots (empty: none)")
	gitmesh := fs.String("gitmesh", "", "gitmesh binary (default: build ./cmd/gitmesh into a temporary directory)")
	gitmeshProxy := fs.String("gitmesh-proxy", "", "gitmesh-proxy binary the data plane's sidecars run (default: build ./cmd/gitmesh-proxy into a temporary directory)")
	render := fs.String("render", "", "only print the table of this results.json and draw its plots")
	cpCases := fs.String("cp-cases", "", "control-plane cases instead of the matrix: <services>x<proxies>[d], comma-separated, d for delta (e.g. 1000x1000,3x5000d)")
	ctrlArgs := fs.String("controller-args", "", "extra arguments of the control plane's controller, space-separated (e.g. --pprof-addr=127.0.0.1:6060)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *render != "" {
		return bench.Render(*render, *plots, os.Stdout)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable: %w", err)
	}
	o := bench.Options{
		Quick: *quick, ResultsDir: *results, PlotDir: *plots, Gitmesh: *gitmesh, GitmeshProxy: *gitmeshProxy, ModuleDir: ".",
		LoadClient: []string{self, "adsload"},
	}
	if *cpCases != "" {
		if o.ControlPlaneCases, err = bench.ParseCPCases(*cpCases); err != nil {
			return err
		}
	}
	o.ControllerArgs = strings.Fields(*ctrlArgs)
	if *parts != "" && *parts != "all" {
		o.Parts = strings.Split(*parts, ",")
	}
	res, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d part(s) failed (see above)", len(res.Errors))
	}
	return nil
}

func adsloadMain(ctx context.Context, args []string) error {
	return bench.ADSLoadMain(ctx, args, os.Stdin, os.Stdout)
}

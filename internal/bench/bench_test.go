package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// loadClientEnv makes this test binary run the ADS load client instead of
// the tests (TestMain), as gitmesh-bench adsload does.
const loadClientEnv = "GITMESH_BENCH_ADSLOAD"

func TestMain(m *testing.M) {
	if os.Getenv(loadClientEnv) == "1" {
		if err := ADSLoadMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuickRun runs the parts of the harness that need no external tools
// (compiler, and a 100-proxy control plane on SotW and delta against a
// real controller process) and draws their plots, so the harness cannot
// rot unnoticed.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a controller and 100 simulated proxies")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, file, _, _ := runtime.Caller(0)
	module := filepath.Join(filepath.Dir(file), "..", "..")
	var out bytes.Buffer
	dir := t.TempDir()
	res, err := Run(ctx, Options{
		Parts:             []string{PartCompiler, PartControlPlane},
		ResultsDir:        filepath.Join(dir, "results"),
		PlotDir:           filepath.Join(dir, "plots"),
		ModuleDir:         module,
		LoadClient:        []string{os.Args[0]},
		LoadClientEnv:     []string{loadClientEnv + "=1"},
		Out:               &out,
		CompilerSizes:     []int{100},
		ControlPlaneCases: []CPCase{{Services: 3, Proxies: 100}, {Services: 3, Proxies: 100, Delta: true}},
	})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
	if len(res.Compiler) != 1 || res.Compiler[0].FullMS <= 0 || res.Compiler[0].RecompileMS <= 0 || res.Compiler[0].Objects != 300 {
		t.Errorf("compiler results = %+v; want one 100-service run with 300 objects and times", res.Compiler)
	}
	if len(res.ControlPlane) != 2 {
		t.Fatalf("control plane results = %d; want 2", len(res.ControlPlane))
	}
	for _, c := range res.ControlPlane {
		t.Run(c.Mode(), func(t *testing.T) {
			if c.Error != "" || c.Ready != 100 || c.ConnectTimeout {
				t.Fatalf("case %+v: ready %d, error %q", c.CPCase, c.Ready, c.Error)
			}
			if len(c.Changes) != 2 {
				t.Fatalf("changes = %d; want one route and all routes", len(c.Changes))
			}
			for _, ch := range c.Changes {
				if ch.Acked != 100 || ch.Timeout || ch.Bytes <= 0 || ch.MaxMS <= 0 {
					t.Errorf("%s: %+v; want 100 proxies ACKing a change in bytes and time", ch.Kind, ch)
				}
			}
		})
	}
	for _, f := range []string{"results/results.json", "results/table.txt", "plots/compiler.png", "plots/controlplane-push.png", "plots/controlplane-connect.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v; want a non-empty file", f, err)
		}
	}
	if !strings.Contains(out.String(), "Control plane targets") {
		t.Errorf("the table has no control-plane targets:\n%s", out.String())
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   362.50us  120.11us   5.01ms   90.00%
    Req/Sec    43.80k     1.20k   45.00k    70.00%
  Latency Distribution
     50%  340.00us
     75%  400.00us
     90%  500.00us
     99%    1.20ms
  438000 requests in 10.00s, 500.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  43800.00
Transfer/sec:     50.00MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{requests: 438000, rps: 43800, p50: 0.34, p90: 0.5, p99: 1.2, errors: 6}
	if r != want {
		t.Errorf("parseWrk = %+v; want %+v", r, want)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct {
		p, want float64
	}{{50, 3}, {99, 5}, {100, 5}, {1, 1}, {20, 1}, {21, 2}} {
		t.Run("", func(t *testing.T) {
			if got := percentile(xs, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v; want %v", xs, tc.p, got, tc.want)
			}
		})
	}
}

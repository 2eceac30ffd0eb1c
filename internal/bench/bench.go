// Package bench is gitmesh's reproducible benchmark harness (make bench):
// the data plane (the bundled proxy against a direct connection, HAProxy
// and nginx, with wrk, h2load and an open-loop load generator), the
// compiler (synthetic meshes of 100 to 10,000 services) and the control
// plane (a real controller process on a Git repository, with thousands of
// simulated ADS proxies in another process). It prints a table, writes
// JSON and renders PNG plots; docs/performance.md explains the method.
//
// Every process it starts runs in its own process group with a parent
// death signal, and is killed when its part ends.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Parts of the harness, as BENCH names them.
const (
	PartDataPlane    = "dataplane"
	PartCompiler     = "compiler"
	PartControlPlane = "controlplane"
)

// Options configures a run.
type Options struct {
	// Parts to run; empty means all.
	Parts []string
	// Quick shrinks every part to a smoke run (about two minutes in all).
	Quick bool
	// ResultsDir receives results.json (and the table as table.txt).
	ResultsDir string
	// PlotDir receives the PNG plots; empty means none are drawn.
	PlotDir string
	// Gitmesh is the gitmesh binary; empty means build ./cmd/gitmesh from
	// ModuleDir into a temporary directory.
	Gitmesh string
	// GitmeshProxy is the gitmesh-proxy binary the data plane's sidecars
	// run, as the injector's do; empty means build ./cmd/gitmesh-proxy.
	GitmeshProxy string
	ModuleDir    string
	// LoadClient is the argv prefix that runs the ADS load client
	// (adsload flags follow), with LoadClientEnv added to its environment.
	LoadClient    []string
	LoadClientEnv []string
	// Out receives progress and the table. If nil, os.Stdout.
	Out io.Writer
	// CompilerSizes and ControlPlaneCases replace the parts' defaults
	// (tests).
	CompilerSizes     []int
	ControlPlaneCases []CPCase
	// ControllerArgs are added to every control-plane controller's
	// command line (e.g. --pprof-addr to profile it under load).
	ControllerArgs []string
}

// Results is everything one run measured (results.json).
type Results struct {
	Started      time.Time        `json:"started"`
	Machine      Machine          `json:"machine"`
	Quick        bool             `json:"quick"`
	DataPlane    *DataPlaneResult `json:"dataplane,omitempty"`
	Compiler     []CompilerResult `json:"compiler,omitempty"`
	ControlPlane []CPResult       `json:"controlplane,omitempty"`
	Errors       []string         `json:"errors,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemoryGB  float64 `json:"memory_gb"`
	GoVersion string  `json:"go_version"`
	Kernel    string  `json:"kernel"`
	LoadAvg   string  `json:"load_avg_at_start"`
}

// Render prints the table of a results.json written by an earlier run and
// draws its plots into plotDir (none when empty).
func Render(resultsFile, plotDir string, out io.Writer) error {
	b, err := os.ReadFile(resultsFile)
	if err != nil {
		return fmt.Errorf("reading results: %w", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("decoding %s: %w", resultsFile, err)
	}
	fmt.Fprint(out, renderTable(&res))
	if plotDir != "" {
		return renderPlots(plotDir, &res)
	}
	return nil
}

// Run runs the selected parts and writes the results; it returns them.
// A part that fails records its error and the others still run.
func Run(ctx context.Context, o Options) (*Results, error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	want := map[string]bool{}
	for _, p := range o.Parts {
		want[p] = true
	}
	all := len(want) == 0
	tmp, err := os.MkdirTemp("", "gitmesh-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := raiseNoFile(65536); err != nil {
		logf("warning: %v", err)
	}
	res := &Results{Started: time.Now().UTC(), Machine: describeMachine(), Quick: o.Quick}
	if (all || want[PartControlPlane]) && o.Gitmesh == "" {
		logf("building ./cmd/gitmesh")
		if o.Gitmesh, err = buildGitmesh(ctx, o.ModuleDir, tmp, "gitmesh", "kustomize_disable_go_plugin_support"); err != nil {
			return nil, err
		}
	}
	if (all || want[PartDataPlane]) && o.GitmeshProxy == "" {
		logf("building ./cmd/gitmesh-proxy")
		if o.GitmeshProxy, err = buildGitmesh(ctx, o.ModuleDir, tmp, "gitmesh-proxy", ""); err != nil {
			return nil, err
		}
	}
	// Results are written after each part (and each control-plane case),
	// so a run stopped part-way keeps what it measured.
	checkpoint := func() {
		if o.ResultsDir != "" {
			if err := writeResults(o.ResultsDir, res, renderTable(res)); err != nil {
				logf("warning: %v", err)
			}
		}
	}
	if all || want[PartDataPlane] {
		dp, err := runDataPlane(ctx, dpEnv{proxy: o.GitmeshProxy, tmp: tmp, logf: logf, quick: o.Quick})
		if err != nil {
			res.Errors = append(res.Errors, "dataplane: "+err.Error())
		}
		res.DataPlane = dp
		checkpoint()
	}
	if all || want[PartCompiler] {
		sizes, runs := []int{100, 1000, 10000}, 3
		if o.Quick {
			sizes, runs = []int{100, 1000}, 1
		}
		if o.CompilerSizes != nil {
			sizes, runs = o.CompilerSizes, 1
		}
		res.Compiler, err = runCompiler(ctx, tmp, sizes, runs, logf)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
		checkpoint()
	}
	if all || want[PartControlPlane] {
		env := cpEnv{gitmesh: o.Gitmesh, controllerArgs: o.ControllerArgs, loadClient: o.LoadClient, loadEnv: o.LoadClientEnv, tmp: tmp, logf: logf}
		cases := controlPlaneCases(o.Quick)
		if o.ControlPlaneCases != nil {
			cases = o.ControlPlaneCases
		}
		runControlPlane(ctx, env, cases, func(r CPResult) {
			res.ControlPlane = append(res.ControlPlane, r)
			checkpoint()
		})
	}
	table := renderTable(res)
	fmt.Fprint(o.Out, "\n"+table)
	if o.ResultsDir != "" {
		if err := writeResults(o.ResultsDir, res, table); err != nil {
			return res, err
		}
		logf("results in %s", o.ResultsDir)
	}
	if o.PlotDir != "" {
		if err := renderPlots(o.PlotDir, res); err != nil {
			return res, err
		}
		logf("plots in %s", o.PlotDir)
	}
	return res, nil
}

// controlPlaneCases is the case matrix: N = 100, 1,000, 5,000 proxies with
// 3 and 1,000 services, state of the world and delta.
func controlPlaneCases(quick bool) []CPCase {
	if quick {
		return []CPCase{{Services: 3, Proxies: 100}, {Services: 3, Proxies: 100, Delta: true}}
	}
	var cs []CPCase
	for _, s := range []int{3, 1000} {
		for _, n := range []int{100, 1000, 5000} {
			for _, d := range []bool{false, true} {
				cs = append(cs, CPCase{Services: s, Proxies: n, Delta: d})
			}
		}
	}
	return cs
}

// ParseCPCases parses control-plane cases written as
// <services>x<proxies>[d], comma-separated ("d" for delta), e.g.
// "1000x1000,1000x1000d,3x5000".
func ParseCPCases(s string) ([]CPCase, error) {
	var cs []CPCase
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		c := CPCase{Delta: strings.HasSuffix(f, "d")}
		if _, err := fmt.Sscanf(strings.TrimSuffix(f, "d"), "%dx%d", &c.Services, &c.Proxies); err != nil || c.Services <= 0 || c.Proxies <= 0 {
			return nil, fmt.Errorf("parsing control-plane case %q: want <services>x<proxies>[d]", f)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// buildGitmesh builds ./cmd/<name> into dir as the image does (see
// Dockerfile): without cgo, trimmed and stripped, with tags. The processes
// measured are then the binaries users run; a cgo build links Go's plugin
// package (through kustomize), which keeps every exported method and makes
// the binary half as large again, and a larger binary leaves more of its
// pages resident.
func buildGitmesh(ctx context.Context, moduleDir, dir, name, tags string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", tags, "-o", bin, "./cmd/"+name)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w: %s", name, err, out)
	}
	return bin, nil
}

// writeResults writes results.json and table.txt into dir.
func writeResults(dir string, res *Results, table string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "table.txt"), []byte(table), 0o644); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// describeMachine reads /proc for the machine's description.
func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemoryGB = kb / 1e6
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/sources"
)

// dpEnv is what the data-plane part needs from outside.
type dpEnv struct {
	proxy string // the gitmesh-proxy binary
	tmp   string
	logf  func(string, ...any)
	quick bool
}

// Data-plane targets, in the order they run.
const (
	targetDirect      = "direct"
	targetSidecar     = "sidecar"
	targetTwo         = "two sidecars"
	targetTwoMTLS     = "two sidecars mTLS"
	targetHAProxy     = "haproxy"
	targetNginx       = "nginx"
	serviceDirect     = "direct.default.svc.cluster.local"
	serviceMeshed     = "meshed.default.svc.cluster.local"
	fixedRate         = 1000
	responseBodyBytes = 1024
)

var dpTargets = []string{targetDirect, targetSidecar, targetTwo, targetTwoMTLS, targetHAProxy, targetNginx}

// runDataPlane runs every target with HTTP/1.1 then h2c.
func runDataPlane(ctx context.Context, env dpEnv) (*DataPlaneResult, error) {
	for _, tool := range []string{"wrk", "h2load", "haproxy", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (make bench-tools installs it)", tool)
		}
	}
	d, warm := 10*time.Second, 2*time.Second
	if env.quick {
		d, warm = 3*time.Second, time.Second
	}
	res := &DataPlaneResult{FixedRate: fixedRate, Seconds: int(d.Seconds())}
	backend, err := startBackend(ctx)
	if err != nil {
		return nil, err
	}
	defer backend.Close()
	cfg, err := startCompiledConfig(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	n := 0
	for _, proto := range []string{"http1", "h2c"} {
		for _, target := range dpTargets {
			n++
			sat, fixed, err := runTarget(ctx, env, cfg, backend.Addr, target, proto, n, d, warm)
			if err != nil {
				env.logf("dataplane: %s %s: %v", target, proto, err)
				errs = append(errs, fmt.Errorf("%s %s: %w", target, proto, err))
				continue
			}
			env.logf("dataplane: %s %s: %.0f rps (p50 %.2f / p99 %.2f ms, %.1f us CPU/req); at %d rps p50 %.3f / p99 %.3f ms, %.3f vCPU, %.1f MB",
				target, proto, sat.RPS, sat.P50MS, sat.P99MS, sat.CPUUSPerReq, fixedRate, fixed.P50MS, fixed.P99MS, fixed.VCPU, fixed.RSSMB)
			res.Saturation = append(res.Saturation, sat)
			res.Fixed = append(res.Fixed, fixed)
		}
	}
	for i := range res.Fixed {
		f := &res.Fixed[i]
		for _, g := range res.Fixed {
			if g.Target == targetDirect && g.Proto == f.Proto {
				f.AddedP50MS, f.AddedP99MS = f.P50MS-g.P50MS, f.P99MS-g.P99MS
			}
		}
	}
	return res, errors.Join(errs...)
}

// backendServer answers every request with 1 KiB, over HTTP/1.1 or h2c.
type backendServer struct {
	*http.Server
	Addr string
}

func startBackend(ctx context.Context) (*backendServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the backend: %w", err)
	}
	body := []byte(strings.Repeat("x", responseBodyBytes))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 5 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(lis) }()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return &backendServer{Server: srv, Addr: lis.Addr().String()}, nil
}

// runningTarget is a target ready for traffic.
type runningTarget struct {
	url, host string
	procs     []*child
}

func (t *runningTarget) stop() {
	for _, p := range t.procs {
		p.stop()
	}
}

// stat sums CPU and RSS over the target's processes and their process
// groups (nginx's workers).
func (t *runningTarget) stat() (procStat, error) {
	var s procStat
	for _, p := range t.procs {
		g, err := readGroup(p.pid())
		if err != nil {
			return s, err
		}
		s.CPU += g.CPU
		s.RSS += g.RSS
		s.Anon += g.Anon
	}
	return s, nil
}

// runTarget starts target for proto, checks it answers, and runs the
// saturation and fixed-rate measurements.
func runTarget(ctx context.Context, env dpEnv, cfg meshConfig, backend, target, proto string, n int, d, warm time.Duration) (SatResult, FixedResult, error) {
	sat, fixed := SatResult{Target: target, Proto: proto}, FixedResult{Target: target, Proto: proto}
	dir, err := os.MkdirTemp(env.tmp, "dp-")
	if err != nil {
		return sat, fixed, err
	}
	defer os.RemoveAll(dir)
	rt, err := startTarget(ctx, env, cfg, dir, backend, target, proto, n)
	if rt != nil {
		defer rt.stop()
	}
	if err != nil {
		return sat, fixed, err
	}
	fixed.Procs = len(rt.procs)
	client := newClient(proto)
	err = waitFor(ctx, 30*time.Second, target+" to answer", func() error {
		for _, p := range rt.procs {
			if p.exited() {
				return fmt.Errorf("%s exited: %s", p.name, tail(p.output()))
			}
		}
		if !get(ctx, client, rt.url, rt.host) {
			return errors.New("no 200 yet")
		}
		return nil
	})
	client.CloseIdleConnections()
	if err != nil {
		return sat, fixed, err
	}

	// Saturation.
	s0, err := rt.stat()
	if err != nil {
		return sat, fixed, err
	}
	var lr loadResult
	if proto == "h2c" {
		sat.Tool = "h2load"
		lr, err = runH2load(ctx, dir, rt.url, rt.host, d)
	} else {
		sat.Tool = "wrk"
		lr, err = runWrk(ctx, rt.url, rt.host, d)
	}
	if err != nil {
		return sat, fixed, err
	}
	s1, err := rt.stat()
	if err != nil {
		return sat, fixed, err
	}
	sat.RPS, sat.P50MS, sat.P90MS, sat.P99MS, sat.Errors = lr.rps, lr.p50, lr.p90, lr.p99, lr.errors
	if len(rt.procs) > 0 && lr.requests > 0 {
		sat.CPUUSPerReq = float64(s1.CPU-s0.CPU) / float64(time.Microsecond) / float64(lr.requests)
	}

	// Fixed rate, open loop.
	f0, err := rt.stat()
	if err != nil {
		return sat, fixed, err
	}
	t0 := time.Now()
	ol := runOpenLoop(ctx, proto, rt.url, rt.host, fixedRate, warm, d)
	wall := time.Since(t0)
	f1, err := rt.stat()
	if err != nil {
		return sat, fixed, err
	}
	fixed.RPS, fixed.Errors = ol.rps, ol.errors
	fixed.P50MS, fixed.P99MS = percentile(ol.latMS, 50), percentile(ol.latMS, 99)
	if len(rt.procs) > 0 {
		fixed.VCPU = float64(f1.CPU-f0.CPU) / float64(wall)
		fixed.RSSMB = float64(f1.RSS) / 1e6
		fixed.AnonMB = float64(f1.Anon) / 1e6
	}
	return sat, fixed, nil
}

// startTarget starts what target needs and returns where to send
// requests.
func startTarget(ctx context.Context, env dpEnv, cfg meshConfig, dir, backend, target, proto string, n int) (*runningTarget, error) {
	rt := &runningTarget{}
	switch target {
	case targetDirect:
		rt.url = "http://" + backend + "/"
		return rt, nil
	case targetHAProxy, targetNginx:
		listen, err := freeAddr()
		if err != nil {
			return rt, err
		}
		conf := filepath.Join(dir, target+".conf")
		var text string
		var argv []string
		if target == targetHAProxy {
			text, argv = haproxyConfig(listen, backend, proto), []string{"haproxy", "-db", "-f", conf}
		} else {
			text, argv = nginxConfig(dir, listen, backend, proto), []string{"nginx", "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;"}
		}
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return rt, fmt.Errorf("writing the %s config: %w", target, err)
		}
		p, err := startChild(target, argv, nil, nil)
		if err != nil {
			return rt, err
		}
		rt.procs = append(rt.procs, p)
		rt.url = "http://" + listen + "/"
		return rt, nil
	}
	// Sidecars.
	addrs := make([]string, 5)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return rt, err
		}
		addrs[i] = a
	}
	client := nodemeta.Workload{
		ID: fmt.Sprintf("bench-client-%d", n), Service: "bench-client", Namespace: nodemeta.DefaultNamespace,
		Role: nodemeta.RoleSidecar, Labels: map[string]string{"app": "bench-client"},
		Outbound: addrs[0], Admin: addrs[1], ServiceAccount: "bench-client",
	}
	fleet := []nodemeta.Workload{client}
	rt.host = serviceDirect
	if target != targetSidecar {
		rt.host = serviceMeshed
		fleet = append(fleet, nodemeta.Workload{
			ID: fmt.Sprintf("bench-server-%d", n), Service: "meshed", Namespace: nodemeta.DefaultNamespace,
			Role: nodemeta.RoleSidecar, Labels: map[string]string{"app": "bench-server"},
			Inbound: addrs[2], App: backend, Admin: addrs[3], ServiceAccount: "bench-server",
		})
	}
	policy, err := dataPlanePolicy(dir, backend, proto)
	if err != nil {
		return rt, err
	}
	if err := cfg.Apply(ctx, policy, fleet, target == targetTwoMTLS); err != nil {
		return rt, err
	}
	for _, w := range fleet {
		argv := []string{env.proxy, "--log-level", "warn", "--xds", cfg.XDSAddr(), "--id", w.ID,
			"--service", w.Service, "--namespace", w.Namespace, "--labels", nodemeta.FormatLabels(w.Labels),
			"--admin", w.Admin, "--service-account", w.ServiceAccount}
		if w.Outbound != "" {
			argv = append(argv, "--outbound", w.Outbound)
		}
		if w.Inbound != "" {
			argv = append(argv, "--inbound", w.Inbound, "--app", w.App)
		}
		p, err := startChild("proxy "+w.ID, argv, nil, nil)
		if err != nil {
			return rt, err
		}
		rt.procs = append(rt.procs, p)
	}
	rt.url = "http://" + client.Outbound + "/"
	return rt, nil
}

// dataPlanePolicy is the data plane's mesh: service direct (the backend
// itself, for one sidecar) and service meshed (the server sidecars), both
// on port 80 with proto's protocol.
func dataPlanePolicy(dir, backend, proto string) ([]sources.Object, error) {
	_, port, err := net.SplitHostPort(backend)
	if err != nil {
		return nil, fmt.Errorf("reading the backend's port: %w", err)
	}
	name, protocol := "http", "HTTP"
	if proto == "h2c" {
		name, protocol = "http2", "HTTP2"
	}
	y := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: direct, namespace: default}
spec:
  hosts: [%[1]s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: %[3]s, protocol: %[4]s}]
  endpoints: [{address: 127.0.0.1, ports: {%[3]s: %[5]s}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: meshed, namespace: default}
spec:
  hosts: [%[2]s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: %[3]s, protocol: %[4]s}]
  workloadSelector: {labels: {app: bench-server}}
`, serviceDirect, serviceMeshed, name, protocol, port)
	pol := filepath.Join(dir, "policy")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pol, "mesh.yaml"), []byte(y), 0o644); err != nil {
		return nil, err
	}
	objs, problems, err := sources.Build(dir, "policy")
	if err != nil {
		return nil, fmt.Errorf("building the data-plane policy: %w", err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("building the data-plane policy: %v", problems[0])
	}
	return objs, nil
}

// Package demo runs `gitmesh up`: an all-in-one local mesh with a Git
// repository seeded from examples/quickstart, the controller, demo services
// behind sidecars and light traffic, and the numbered tour it prints. It
// holds wiring only.
package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/proxy"
)

// Config configures the demo.
type Config struct {
	// Dir holds the demo's repository (Dir/policy), state (Dir/state) and
	// logs (Dir/logs). Required.
	Dir string
	// PortBase is the first port of the demo's layout: the admin API on
	// PortBase, the frontend sidecar's outbound listener on PortBase+1,
	// xDS on PortBase+10, inbound listeners from PortBase+101, proxy admin
	// ports from PortBase+201. Default DefaultPortBase. Unless FixedPorts,
	// a layout with a port in use moves on by 1000 until one is free.
	PortBase int
	// FixedPorts makes a taken port of PortBase's layout an error.
	FixedPorts bool
	// Interval is the controller's poll interval. Default 1s.
	Interval time.Duration
	// TrafficInterval is how often the demo's load sends a request through
	// the frontend. Default 200ms.
	TrafficInterval time.Duration
	// NewLogger builds the components' logger on w (Dir/logs/up.log, and
	// Console too when set). If nil, a text logger at info level.
	NewLogger func(w io.Writer) *slog.Logger
	// Console, when set, receives the logs too (gitmesh up -v).
	Console io.Writer
	// Out receives the banner and the tour. If nil, they are discarded.
	Out io.Writer
	// Err receives the end of the log when the start fails and the logs
	// go to the file only. If nil, it is not written.
	Err io.Writer
	// CLI is how the tour calls the gitmesh CLI. Default "gitmesh".
	CLI string
	// Login, when set, is called once the demo serves, with where it runs
	// (e.g. to write the CLI's client context); the line it returns is
	// printed in the banner. An error fails the start.
	Login func(info Info) (string, error)
	// Ready, when set, is called with the running demo's Info and tour
	// after the banner is printed.
	Ready func(info Info, steps []Step)
}

// service is one demo workload behind a sidecar.
type service struct {
	id, name, version string
}

var demoServices = [...]service{
	{"frontend-1", "frontend", "v1"},
	{"reviews-v1-1", "reviews", "v1"},
	{"reviews-v2-1", "reviews", "v2"},
}

// Run starts the demo and blocks until ctx is done, then stops everything.
// A start that fails removes what it created of Dir. When another `up`
// holds Dir, it returns a *RunningError at once.
func Run(ctx context.Context, cfg Config) (err error) {
	start := time.Now()
	if cfg.Dir == "" {
		return errors.New("starting demo: no directory")
	}
	// Absolute, so that the printed steps work from any directory.
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return fmt.Errorf("starting demo: %w", err)
	}
	cfg.PortBase = cmp.Or(cfg.PortBase, DefaultPortBase)
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	cfg.TrafficInterval = cmp.Or(cfg.TrafficInterval, 200*time.Millisecond)
	cfg.CLI = cmp.Or(cfg.CLI, "gitmesh")
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}

	made, err := makeDirs(cfg.Dir)
	if err != nil {
		return err
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		made.undo() // only what this run created; never the other run's
		return err
	}
	defer lock.release()
	logs, err := openLog(cfg.Dir)
	if err != nil {
		made.undo()
		return err
	}
	defer logs.Close()
	var w io.Writer = logs
	if cfg.Console != nil {
		w = io.MultiWriter(logs, cfg.Console)
	}
	log := slog.New(slog.NewTextHandler(w, nil))
	if cfg.NewLogger != nil {
		log = cfg.NewLogger(w)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var ctrl *controller.Controller
	started := false
	defer func() {
		if started {
			return
		}
		// A failed start: stop what runs, then remove what this run made.
		cancel()
		wg.Wait()
		if ctrl != nil {
			_ = ctrl.Wait()
		}
		log.Error("gitmesh up failed to start", "error", err)
		if cfg.Console == nil && cfg.Err != nil {
			writeTail(cfg.Err, logs.Name(), 20)
		}
		if made.dir {
			err = fmt.Errorf("%w (removed %s, which it had created)", err, cfg.Dir)
		}
		_ = logs.Close()
		lock.release()
		made.undo()
	}()

	base, err := findLayout(cfg.PortBase, cfg.FixedPorts)
	if err != nil {
		return fmt.Errorf("starting demo: %w", err)
	}
	port := func(off int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+off)) }
	if err := lock.record(lockInfo{PID: os.Getpid(), AdminURL: "http://" + port(offAdmin)}); err != nil {
		return err
	}
	info := Info{Dir: cfg.Dir, RepoDir: filepath.Join(cfg.Dir, "policy"), LogFile: logs.Name(),
		PortBase: base, Moved: base != cfg.PortBase}
	stateDir := filepath.Join(cfg.Dir, "state")
	info.TokenFile = filepath.Join(stateDir, "admin-token")
	if info.Seeded, err = seedRepo(info.RepoDir); err != nil {
		return err
	}
	log.Info("starting gitmesh up", "dir", cfg.Dir, "port_base", base, "pid", os.Getpid())

	ctrl, err = controller.Start(ctx, controller.Config{
		RepoURL: info.RepoDir, Path: ".", Interval: cfg.Interval,
		XDSAddr: port(offXDS), AdminAddr: port(offAdmin), StateDir: stateDir,
		Logger: log.With("component", "controller"),
	})
	if err != nil {
		return fmt.Errorf("starting demo controller: %w", err)
	}
	info.AdminURL, info.XDSAddr = "http://"+ctrl.AdminAddr, ctrl.XDSAddr

	info.Outbound = port(offOutbound)
	for i, s := range demoServices {
		app, err := startApp(ctx, &wg, s, info.Outbound)
		if err != nil {
			return err
		}
		w := nodemeta.Workload{
			ID: s.id, Service: s.name, Namespace: nodemeta.DefaultNamespace, Role: nodemeta.RoleSidecar,
			Labels:  map[string]string{"app": s.name, "version": s.version},
			Inbound: port(offInbound + i), App: app, Admin: port(offProxyAdmin + i),
		}
		if i == 0 {
			w.Outbound = info.Outbound
		}
		p, err := proxy.New(proxy.Config{XDSAddr: ctrl.XDSAddr, Workload: w, Logger: log.With("component", "proxy")}) // the proxy adds node_id
		if err != nil {
			return fmt.Errorf("starting sidecar %s: %w", s.id, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("sidecar stopped", "node_id", s.id, "error", err)
			}
		}()
		info.Sidecars = append(info.Sidecars, s.id)
		info.ProxyAdmins = append(info.ProxyAdmins, w.Admin)
	}

	if err := waitReady(ctx, info.ProxyAdmins, info.Outbound, 30*time.Second); err != nil {
		return fmt.Errorf("waiting for the demo mesh: %w", err)
	}
	if cfg.Login != nil {
		if info.Login, err = cfg.Login(info); err != nil {
			return fmt.Errorf("writing the client context: %w", err)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		lightTraffic(ctx, info.Outbound, cfg.TrafficInterval)
	}()
	started = true
	info.Took = time.Since(start)
	log.Info("gitmesh up is ready", "admin_url", info.AdminURL, "xds_addr", info.XDSAddr, "took", info.Took)
	steps := Steps(info, cfg.CLI)
	printBanner(cfg.Out, info, steps)
	if cfg.Ready != nil {
		cfg.Ready(info, steps)
	}

	<-ctx.Done()
	fmt.Fprintln(cfg.Out, "\nstopping gitmesh up ...")
	cancel()
	wg.Wait()
	return ctrl.Wait()
}

// created records what makeDirs created, to remove after a failed start.
type created struct {
	// dir is set when the demo directory itself was created; sub lists
	// subdirectories created in an existing one.
	dir  bool
	path string
	sub  []string
}

// makeDirs creates dir and its logs/ subdirectory when missing. The policy
// repository and state are created later, by seedRepo and the controller;
// their paths are recorded now when missing, so a failed start removes them.
func makeDirs(dir string) (*created, error) {
	c := &created{path: dir}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		c.dir = true
	}
	for _, sub := range []string{"policy", "state", "logs"} {
		p := filepath.Join(dir, sub)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			c.sub = append(c.sub, p)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating demo directory: %w", err)
	}
	return c, nil
}

// undo removes what was created.
func (c *created) undo() {
	if c.dir {
		_ = os.RemoveAll(c.path)
		return
	}
	for _, p := range c.sub {
		if filepath.Base(p) != "logs" { // the log tells what failed
			_ = os.RemoveAll(p)
		}
	}
}

// Package demo runs `gitmesh up`: an all-in-one local mesh with a Git
// repository seeded from examples/quickstart, the controller, demo services
// behind sidecars and light traffic. It holds wiring only.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/examples/quickstart"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/proxy"
)

// Config configures the demo.
type Config struct {
	// Dir holds the demo's repository (Dir/policy) and state (Dir/state).
	Dir string
	// PortBase is the first port of the demo's fixed layout: the admin API
	// on PortBase, the frontend sidecar's outbound listener on PortBase+1,
	// xDS on PortBase+10, inbound listeners from PortBase+101, proxy admin
	// ports from PortBase+201.
	PortBase int
	// Interval is the controller's poll interval.
	Interval time.Duration
	// Logger receives the components' logs.
	Logger *slog.Logger
	// Out receives the instructions for the user.
	Out io.Writer
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
func Run(ctx context.Context, cfg Config) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	repoDir := filepath.Join(cfg.Dir, "policy")
	seeded, err := seedRepo(repoDir)
	if err != nil {
		return err
	}
	port := func(off int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.PortBase+off)) }

	ctrl, err := controller.Start(ctx, controller.Config{
		RepoURL: repoDir, Path: ".", Interval: cfg.Interval,
		XDSAddr: port(10), AdminAddr: port(0), StateDir: filepath.Join(cfg.Dir, "state"),
		Logger: cfg.Logger.With("component", "controller"),
	})
	if err != nil {
		return fmt.Errorf("starting demo controller: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	outbound := port(1)
	var admins []string
	for i, s := range demoServices {
		app, err := startApp(ctx, &wg, s, outbound)
		if err != nil {
			return err
		}
		w := nodemeta.Workload{
			ID: s.id, Service: s.name, Namespace: nodemeta.DefaultNamespace, Role: nodemeta.RoleSidecar,
			Labels:  map[string]string{"app": s.name, "version": s.version},
			Inbound: port(101 + i), App: app, Admin: port(201 + i),
		}
		if i == 0 {
			w.Outbound = outbound
		}
		p, err := proxy.New(proxy.Config{XDSAddr: ctrl.XDSAddr, Workload: w, Logger: cfg.Logger.With("component", "proxy")}) // the proxy adds node_id
		if err != nil {
			return fmt.Errorf("starting sidecar %s: %w", s.id, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				cfg.Logger.Error("sidecar stopped", "node_id", s.id, "error", err)
			}
		}()
		admins = append(admins, w.Admin)
	}

	if err := waitReady(ctx, admins, outbound, 30*time.Second); err != nil {
		return fmt.Errorf("waiting for the demo mesh: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		lightTraffic(ctx, outbound)
	}()
	printNext(cfg.Out, cfg.Dir, repoDir, seeded, ctrl, outbound, admins, time.Since(start))

	<-ctx.Done()
	fmt.Fprintln(cfg.Out, "\nstopping gitmesh up ...")
	cancel()
	return ctrl.Wait()
}

// seedRepo creates a Git repository at dir from the embedded quickstart
// policy, or reuses the one there (keeping the user's commits). It reports
// whether it created it.
func seedRepo(dir string) (bool, error) {
	if _, err := gogit.PlainOpen(dir); err == nil {
		return false, nil
	}
	repo, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return false, fmt.Errorf("creating demo repository %s: %w", dir, err)
	}
	// A local identity, so `git commit` works in the demo repo on a fresh machine.
	c, err := repo.Config()
	if err != nil {
		return false, fmt.Errorf("configuring demo repository: %w", err)
	}
	c.User.Name, c.User.Email = "gitmesh demo", "demo@gitmesh.invalid"
	if err := repo.SetConfig(c); err != nil {
		return false, fmt.Errorf("configuring demo repository: %w", err)
	}
	err = fs.WalkDir(quickstart.Policy, "policy", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := quickstart.Policy.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("writing quickstart policy: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	if err := wt.AddGlob("*.yaml"); err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	sig := &object.Signature{Name: c.User.Name, Email: c.User.Email, When: time.Now()}
	if _, err := wt.Commit("Seed the gitmesh quickstart policy", &gogit.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return false, fmt.Errorf("seeding demo repository: %w", err)
	}
	return true, nil
}

// startApp starts a demo application on a free loopback port. reviews
// answers with its version; frontend calls reviews through its sidecar's
// outbound listener and reports what it got.
func startApp(ctx context.Context, wg *sync.WaitGroup, s service, outbound string) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("starting demo app %s: %w", s.id, err)
	}
	proxyURL := &url.URL{Scheme: "http", Host: outbound}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.name != "frontend" {
			fmt.Fprintf(w, "%s %s (%s)\n", s.name, s.version, s.id)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://reviews:9080/", nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "frontend: calling reviews: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		w.WriteHeader(resp.StatusCode)
		fmt.Fprintf(w, "frontend -> %s", body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve(lis)
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		_ = srv.Close()
	}()
	return lis.Addr().String(), nil
}

// waitReady polls the sidecars' /ready and a request through the outbound
// listener until all succeed or timeout passes.
func waitReady(ctx context.Context, admins []string, outbound string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	ok := func(url, host string) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, a := range admins {
			ready = ready && ok("http://"+a+"/ready", "")
		}
		if ready && ok("http://"+outbound+"/", "frontend") {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the sidecars did not become ready in time (see the logs above)")
		case <-tick.C:
		}
	}
}

// lightTraffic sends two requests a second through the frontend, so the
// proxies' metrics have something to show.
func lightTraffic(ctx context.Context, outbound string) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+outbound+"/", nil)
			req.Host = "frontend"
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
}

func printNext(w io.Writer, dir, repoDir string, seeded bool, ctrl *controller.Controller, outbound string, admins []string, took time.Duration) {
	how := "reused"
	if seeded {
		how = "created from examples/quickstart"
	}
	fmt.Fprintf(w, `
gitmesh is up (ready in %s).

  policy repo   %s (%s; the controller polls it every second)
  controller    http://%s  (xDS on %s)
  sidecars      frontend-1, reviews-v1-1, reviews-v2-1 (admin: %s, ...)

Send a request through the frontend's sidecar:

  curl -H 'Host: reviews' http://%s/
  curl -x http://%s http://frontend:9080/

Shift reviews from v1 to v2, commit, and watch it roll out (one proxy, a 5s bake, then everyone):

  sed -i 's/subset: v1/subset: v2/' %s/reviews.yaml
  git -C %s commit -am 'reviews: all traffic to v2'
  go run ./cmd/gitmesh status --watch --controller http://%s
  curl -H 'Host: reviews' http://%s/
  go run ./cmd/gitmesh history --controller http://%s

Metrics (Istio names): curl http://%s/metrics | grep istio_requests_total
Ctrl-C stops everything; the repository stays in %s.
`, took.Round(time.Millisecond), repoDir, how, ctrl.AdminAddr, ctrl.XDSAddr, admins[0], outbound, outbound,
		repoDir, repoDir, ctrl.AdminAddr, outbound, ctrl.AdminAddr, admins[0], dir)
}

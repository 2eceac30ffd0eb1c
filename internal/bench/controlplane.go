package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/internal/bench/adsload"
	"github.com/gitmesh/gitmesh/internal/bench/meshgen"
)

// CPCase is one control-plane configuration.
type CPCase struct {
	Services int  `json:"services"`
	Proxies  int  `json:"proxies"`
	Delta    bool `json:"delta"`
}

// Mode names the case's xDS variant.
func (c CPCase) Mode() string {
	if c.Delta {
		return "delta"
	}
	return "sotw"
}

// CPResult is one control-plane case's figures.
type CPResult struct {
	CPCase
	// ConnectMS is the time from the load client's first dial to every
	// proxy having ACKed its first snapshot; ConnectTimeout says not all
	// did within the deadline (Ready did).
	ConnectMS      float64 `json:"connect_ms"`
	ConnectTimeout bool    `json:"connect_timeout,omitempty"`
	Ready          int     `json:"ready"`
	// ConnectBytes is what the proxies received to connect.
	ConnectBytes int64 `json:"connect_bytes"`
	// RSS of the controller before the proxies connected and after, and
	// the difference per connected proxy.
	RSSBeforeMB   float64 `json:"rss_before_mb"`
	RSSAfterMB    float64 `json:"rss_after_mb"`
	RSSPerProxyKB float64 `json:"rss_per_proxy_kb"`
	// Changes are the pushes: one route changed, then every route.
	Changes []CPChange `json:"changes"`
	Error   string     `json:"error,omitempty"`
}

// CPChange is one commit's propagation.
type CPChange struct {
	// Kind is "one route" or "all routes".
	Kind string `json:"kind"`
	// P50MS, P99MS and MaxMS are, across proxies, the time from the
	// controller's "new revision" log line (the commit seen) to the proxy's
	// ACK of the changed routes.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// Acked proxies; Timeout when not all did in time.
	Acked   int  `json:"acked"`
	Timeout bool `json:"timeout,omitempty"`
	// CPUMS is the controller's CPU from before the commit to the fleet
	// quiet again, less its idle CPU (polling) over the same time.
	CPUMS float64 `json:"cpu_ms"`
	// Bytes and Responses are what the proxies received for the change.
	Bytes     int64 `json:"bytes"`
	Responses int64 `json:"responses"`
}

// cpEnv is what a control-plane run needs from outside.
type cpEnv struct {
	gitmesh string // the gitmesh binary
	// controllerArgs are added to the controller's command line.
	controllerArgs []string
	loadClient     []string // argv prefix of the ADS load client
	loadEnv        []string
	tmp            string
	logf           func(string, ...any)
}

// runControlPlane runs each case against a fresh controller and hands
// each result to done.
func runControlPlane(ctx context.Context, env cpEnv, cases []CPCase, done func(CPResult)) {
	for _, c := range cases {
		if ctx.Err() != nil {
			break
		}
		r := runCPCase(ctx, env, c)
		if r.Error != "" {
			env.logf("controlplane: %d services x %d proxies (%s): %s", c.Services, c.Proxies, c.Mode(), r.Error)
		} else {
			env.logf("controlplane: %d services x %d proxies (%s): connected %.0f ms (%d ready), %.0f KB RSS/proxy; %s",
				c.Services, c.Proxies, c.Mode(), r.ConnectMS, r.Ready, r.RSSPerProxyKB, changesLine(r.Changes))
		}
		done(r)
	}
}

func changesLine(cs []CPChange) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s: p50 %.0f / p99 %.0f / max %.0f ms, %d acked, %.0f ms CPU, %d KB",
			c.Kind, c.P50MS, c.P99MS, c.MaxMS, c.Acked, c.CPUMS, c.Bytes/1024))
	}
	return strings.Join(parts, "; ")
}

// controllerLog follows the controller's JSON log for the lines the
// benchmark times.
type controllerLog struct {
	mu      sync.Mutex // protects seen and serving
	seen    map[string]time.Time
	serving map[string]bool
}

func (l *controllerLog) line(s string) {
	var e struct {
		Time     time.Time `json:"time"`
		Msg      string    `json:"msg"`
		Revision string    `json:"revision"`
	}
	if json.Unmarshal([]byte(s), &e) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Msg {
	case "new revision":
		l.seen[e.Revision] = e.Time
	case "serving revision":
		l.serving[e.Revision] = true
	}
}

// seenAt returns when the controller saw the revision of commit sha.
func (l *controllerLog) seenAt(sha string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for rev, t := range l.seen {
		if strings.HasSuffix(rev, sha) {
			return t, true
		}
	}
	return time.Time{}, false
}

func (l *controllerLog) isServing(sha string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for rev := range l.serving {
		if strings.HasSuffix(rev, sha) {
			return true
		}
	}
	return false
}

// freeAddr returns a loopback address free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// runCPCase runs one case; failures are reported in the result.
func runCPCase(ctx context.Context, env cpEnv, c CPCase) (r CPResult) {
	r.CPCase = c
	dir, err := os.MkdirTemp(env.tmp, "cp-")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	if err := cpCase(ctx, env, c, dir, &r); err != nil {
		r.Error = err.Error()
	}
	return r
}

func cpCase(ctx context.Context, env cpEnv, c CPCase, dir string, r *CPResult) error {
	repo, err := newGitRepo(ctx, dir)
	if err != nil {
		return err
	}
	pol := filepath.Join(repo.work, "policy")
	if err := meshgen.Write(pol, c.Services, 0); err != nil {
		return err
	}
	sha, err := repo.commit(ctx, fmt.Sprintf("%d services", c.Services))
	if err != nil {
		return err
	}
	xdsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return err
	}
	log := &controllerLog{seen: map[string]time.Time{}, serving: map[string]bool{}}
	ctrl, err := startChild("controller", append([]string{env.gitmesh, "--log-format", "json", "controller",
		"--repo", repo.URL(), "--branch", "main", "--path", "policy", "--interval", "100ms",
		"--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--state-dir", filepath.Join(dir, "state"),
		"--kubernetes=false"}, env.controllerArgs...), nil, log.line)
	if err != nil {
		return err
	}
	defer ctrl.stop()
	if err := waitFor(ctx, 2*time.Minute, "the controller to serve the first revision", func() error {
		if ctrl.exited() {
			return fmt.Errorf("the controller exited: %s", tail(ctrl.output()))
		}
		if !log.isServing(sha) {
			return fmt.Errorf("not serving %s yet", sha)
		}
		return nil
	}); err != nil {
		return err
	}
	settle(ctx, time.Second)
	before, err := readProc(ctrl.pid())
	if err != nil {
		return err
	}
	r.RSSBeforeMB = float64(before.RSS) / 1e6

	connectTimeout := 60*time.Second + time.Duration(c.Proxies)*60*time.Millisecond
	argv := append(append([]string(nil), env.loadClient...),
		"--xds", xdsAddr, fmt.Sprintf("--n=%d", c.Proxies), fmt.Sprintf("--delta=%t", c.Delta),
		"--connect-timeout", connectTimeout.String(), "--converge-timeout", "60s")
	lc, err := startLoadClient(argv, env.loadEnv)
	if err != nil {
		return err
	}
	defer lc.stop()
	over := guardRSS(ctx, ctrl, maxControllerRSS)
	ev, err := lc.next(ctx, connectTimeout+30*time.Second, "connected")
	if o := over(); o != "" {
		return errors.New(o)
	}
	if err != nil {
		return err
	}
	r.ConnectMS, r.ConnectTimeout, r.Ready, r.ConnectBytes = ev.ConnectMS, ev.Timeout, ev.Ready, ev.Bytes
	if ev.Timeout {
		// Changes measured now would be mixed up with the first snapshots
		// still in flight.
		return fmt.Errorf("only %d of %d proxies ACKed their first snapshot within %s; changes not measured", ev.Ready, c.Proxies, connectTimeout)
	}
	settle(ctx, time.Second)
	after, err := readProc(ctrl.pid())
	if err != nil {
		return err
	}
	r.RSSAfterMB = float64(after.RSS) / 1e6
	r.RSSPerProxyKB = float64(after.RSS-before.RSS) / 1e3 / float64(max(c.Proxies, 1))

	for k, kind := range []string{"one route", "all routes"} {
		// Idle CPU (the 100 ms poll) over one second, subtracted below.
		i0, _ := readProc(ctrl.pid())
		t0 := time.Now()
		settle(ctx, time.Second)
		i1, _ := readProc(ctrl.pid())
		idleRate := float64(i1.CPU-i0.CPU) / float64(time.Since(t0))

		if err := lc.send("mark"); err != nil {
			return err
		}
		if _, err := lc.next(ctx, 30*time.Second, "marked"); err != nil {
			return err
		}
		c0, _ := readProc(ctrl.pid())
		t1 := time.Now()
		if kind == "one route" {
			err = os.WriteFile(filepath.Join(pol, meshgen.File(0)), meshgen.Service(0, k+1), 0o644)
		} else {
			err = meshgen.Write(pol, c.Services, k+1)
		}
		if err != nil {
			return err
		}
		sha, err := repo.commit(ctx, kind)
		if err != nil {
			return err
		}
		ev, err := lc.next(ctx, 2*time.Minute, "converged")
		if o := over(); o != "" {
			return errors.New(o)
		}
		if err != nil {
			return err
		}
		c1, _ := readProc(ctrl.pid())
		cpu := float64(c1.CPU-c0.CPU) - idleRate*float64(time.Since(t1))
		ch := CPChange{Kind: kind, Acked: ev.Ready, Timeout: ev.Timeout, CPUMS: max(cpu, 0) / float64(time.Millisecond),
			Bytes: ev.Bytes, Responses: ev.Responses}
		seen, ok := log.seenAt(sha)
		if !ok {
			return fmt.Errorf("the controller never logged seeing %s", sha)
		}
		var lat []float64
		for _, a := range ev.AckUnixNano {
			lat = append(lat, ms(time.Unix(0, a).Sub(seen)))
		}
		ch.P50MS, ch.P99MS, ch.MaxMS = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
		r.Changes = append(r.Changes, ch)
	}
	return nil
}

// maxControllerRSS is where a case is stopped: the machine is shared, and
// a controller past it would push others into swap.
const maxControllerRSS = 8 << 30

// guardRSS watches the controller's RSS every 500ms and kills it past
// limit. The returned function says whether it did (and at what RSS).
func guardRSS(ctx context.Context, ctrl *child, limit int64) func() string {
	var mu sync.Mutex // protects msg
	var msg string
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ctrl.done:
				return
			case <-t.C:
			}
			if st, err := readProc(ctrl.pid()); err == nil && st.RSS > limit {
				mu.Lock()
				msg = fmt.Sprintf("stopped: controller RSS %.1f GB passed the harness's %.0f GB limit", float64(st.RSS)/1e9, float64(limit)/(1<<30))
				mu.Unlock()
				ctrl.stop()
				return
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return msg
	}
}

// settle waits d unless ctx ends first.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// tail returns the last lines of s.
func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// loadClient is a running ADS load client process.
type loadClient struct {
	*child
	stdin  io.WriteCloser
	events chan adsload.Event
}

func startLoadClient(argv, env []string) (*loadClient, error) {
	lc := &loadClient{events: make(chan adsload.Event, 16)}
	c, err := startChildStdin("ads load client", argv, env, func(l string) {
		var e adsload.Event
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &e) == nil && e.Event != "" {
			lc.events <- e
		}
	})
	if err != nil {
		return nil, err
	}
	lc.child, lc.stdin = c, c.stdin
	return lc, nil
}

// send writes a command line.
func (lc *loadClient) send(cmd string) error {
	if _, err := io.WriteString(lc.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("telling the load client %q: %w", cmd, err)
	}
	return nil
}

// next waits for the next event, which must be want.
func (lc *loadClient) next(ctx context.Context, d time.Duration, want string) (adsload.Event, error) {
	select {
	case e := <-lc.events:
		if e.Event != want {
			return e, fmt.Errorf("the load client said %s (%s), want %s", e.Event, e.Error, want)
		}
		return e, nil
	case <-lc.done:
		return adsload.Event{}, fmt.Errorf("the load client exited: %s", tail(lc.output()))
	case <-time.After(d):
		return adsload.Event{}, fmt.Errorf("no %s event from the load client after %s", want, d)
	case <-ctx.Done():
		return adsload.Event{}, ctx.Err()
	}
}

func (lc *loadClient) stop() {
	_ = lc.send("quit")
	lc.stdin.Close()
	select {
	case <-lc.done:
	case <-time.After(5 * time.Second):
	}
	lc.child.stop()
}

// Package promtest starts a real Prometheus server for tests: the
// `prometheus` binary (Debian/Ubuntu package prometheus) on a loopback
// port, with its storage in t.TempDir(), scraping the given targets every
// 100ms. The process is killed when the test ends.
//
//	addr := promtest.Start(t, []string{backend.Listener.Addr().String()})
//	v := promtest.WaitForValue(t, addr, `sum(my_metric)`, 30*time.Second)
//
// When the binary is missing the test is skipped, or fails when the CI
// environment variable is "true". Set PROMETHEUS to the binary's path to
// use another one.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/syncbuf"
)

// ScrapeInterval is how often the started Prometheus scrapes its targets.
const ScrapeInterval = 100 * time.Millisecond

// StartTimeout bounds how long Start waits for Prometheus to be ready.
const StartTimeout = 60 * time.Second

// Binary returns the path of the prometheus binary: $PROMETHEUS, else
// "prometheus" on $PATH. When there is none it skips t, or fails it when
// $CI is "true".
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PROMETHEUS"); p != "" {
		return p
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		msg := "prometheus binary not found on $PATH (install the Debian package: apt-get install prometheus, or set $PROMETHEUS)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Start runs Prometheus scraping scrapeTargets (host:port each, path
// /metrics, job "promtest") and returns its base URL,
// http://127.0.0.1:<port>, once /-/ready answers 200. It fails t if
// Prometheus does not start within StartTimeout, logging its output.
func Start(t testing.TB, scrapeTargets []string) (addr string) {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	targets, err := json.Marshal(scrapeTargets)
	if err != nil {
		t.Fatalf("encoding scrape targets: %v", err)
	}
	if scrapeTargets == nil {
		targets = []byte("[]")
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
- job_name: promtest
  static_configs:
  - targets: %[2]s
`, ScrapeInterval, targets)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing prometheus config: %v", err)
	}

	// The port is picked free and then handed over, so another process may
	// take it in between: retry a few times.
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		addr = "http://127.0.0.1:" + strconv.Itoa(port)
		out := &syncbuf.Buffer{}
		cmd := exec.Command(bin,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
			"--log.level=warn",
		)
		cmd.Stdout, cmd.Stderr = out, out
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		exited := make(chan struct{}) // closed when the process has exited
		var waitErr error             // set before exited is closed
		go func() {
			waitErr = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("prometheus output:\n%s", out.String())
			}
		})
		err := waitReady(addr, exited, &waitErr)
		if err == nil {
			return addr
		}
		if attempt < 2 && strings.Contains(out.String(), "address already in use") {
			continue
		}
		t.Fatalf("starting prometheus: %v\n%s", err, out.String())
	}
}

// waitReady polls addr's /-/ready until it answers 200, the process
// exits (exited is closed, *waitErr says how), or StartTimeout passes.
func waitReady(addr string, exited <-chan struct{}, waitErr *error) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		resp, err := client.Get(addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/-/ready: %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("prometheus exited: %v", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", StartTimeout, last)
		case <-tick.C:
		}
	}
}

// WaitForValue polls the instant query promql at the Prometheus at addr
// until it yields a non-empty result and returns its first value; it
// fails t after timeout. Use it to wait until a target has been scraped.
func WaitForValue(t testing.TB, addr, promql string, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := query(addr, promql)
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus query %s: no result within %s: %v", promql, timeout, err)
		}
		<-tick.C
	}
}

// query returns the first value of an instant query's vector or scalar.
func query(addr, promql string) (float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(addr + "/api/v1/query?" + url.Values{"query": {promql}}.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decoding response (%s): %w", resp.Status, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query failed: %s", r.Error)
	}
	var pair [2]any
	switch r.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(r.Data.Result, &pair); err != nil {
			return 0, err
		}
	case "vector":
		var v []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return 0, err
		}
		if len(v) == 0 {
			return 0, fmt.Errorf("empty result")
		}
		pair = v[0].Value
	default:
		return 0, fmt.Errorf("result type %q", r.Data.ResultType)
	}
	s, _ := pair[1].(string)
	return strconv.ParseFloat(s, 64)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

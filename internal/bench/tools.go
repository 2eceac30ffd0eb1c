package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// loadResult is what a saturation tool measured.
type loadResult struct {
	requests      int
	rps           float64
	p50, p90, p99 float64 // ms
	errors        int
}

// runWrk runs wrk with 1 thread and 16 connections for d against url
// with the Host header host, and reads its latency distribution.
func runWrk(ctx context.Context, url, host string, d time.Duration) (loadResult, error) {
	args := []string{"-t1", "-c16", fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", "--timeout", "5s"}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("running wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkPct   = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkRPS   = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkTotal = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	wrkErr   = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2  = regexp.MustCompile(`(?m)Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk --latency output.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("reading wrk's output: no Requests/sec in %q", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		switch m[1] {
		case "50":
			r.p50 = v
		case "90":
			r.p90 = v
		case "99":
			r.p99 = v
		}
	}
	if m := wrkErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.errors += n
		}
	}
	if m := wrkNon2.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	return r, nil
}

// runH2load runs h2load (h2c prior knowledge) with 1 thread, 16
// connections and one stream each for d, and computes the latency
// percentiles from its per-request log.
func runH2load(ctx context.Context, tmp, url, host string, d time.Duration) (loadResult, error) {
	log := filepath.Join(tmp, "h2load.log")
	defer os.Remove(log)
	args := []string{"-t1", "-c16", "-m1", "-D", strconv.Itoa(int(d.Seconds())), "--log-file", log}
	if host != "" {
		args = append(args, "-H", ":authority: "+host)
	}
	out, err := exec.CommandContext(ctx, "h2load", append(args, url)...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("running h2load: %w: %s", err, out)
	}
	var r loadResult
	if m := regexp.MustCompile(`(?m)^finished in [^,]+, ([\d.]+) req/s`).FindStringSubmatch(string(out)); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	} else {
		return r, fmt.Errorf("reading h2load's output: no req/s in %q", out)
	}
	if m := regexp.MustCompile(`(?m)^requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`).FindStringSubmatch(string(out)); m != nil {
		f, _ := strconv.Atoi(m[2])
		e, _ := strconv.Atoi(m[3])
		r.errors = f + e
	}
	if m := regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`).FindStringSubmatch(string(out)); m != nil {
		a, _ := strconv.Atoi(m[3])
		b, _ := strconv.Atoi(m[4])
		r.errors += a + b
	}
	f, err := os.Open(log)
	if err != nil {
		return r, fmt.Errorf("reading h2load's log: %w", err)
	}
	defer f.Close()
	var lat []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start time (us since epoch), status, us until the response ended
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		us, err := strconv.ParseFloat(fs[2], 64)
		if err == nil {
			lat = append(lat, us/1000)
		}
	}
	r.requests = len(lat)
	r.p50, r.p90, r.p99 = percentile(lat, 50), percentile(lat, 90), percentile(lat, 99)
	return r, nil
}

// haproxyConfig is HAProxy in front of backend: HTTP/1.1 keep-alive both
// sides, or h2c prior knowledge from clients and to the backend.
func haproxyConfig(listen, backend, proto string) string {
	fe, be := "", ""
	if proto == "h2c" {
		fe, be = " proto h2", " proto h2"
	}
	return fmt.Sprintf(`global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe
    bind %s%s
    default_backend be
backend be
    http-reuse always
    server app %s%s
`, listen, fe, backend, be)
}

// nginxConfig is nginx in front of backend with upstream keep-alive
// (HTTP/1.1 upstream: nginx proxies h2 only to gRPC servers). Its default
// keepalive_requests (1,000 per connection, HTTP/2 included) would close
// the load tools' connections every thousand requests: h2load does not
// reconnect, so it is lifted on both sides.
func nginxConfig(dir, listen, backend, proto string) string {
	h2 := ""
	if proto == "h2c" {
		h2 = " http2"
	}
	return fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream app {
        server %[3]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[2]s%[4]s;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, listen, backend, h2)
}

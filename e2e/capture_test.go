//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// proxyUID is the uid the sidecar runs as (Istio's 1337).
const proxyUID = 1337

// TestProxyInitCapture runs `gitmesh proxy-init` in a network namespace
// the test creates, then a sidecar there as uid 1337 with
// --interception-mode REDIRECT, against a controller and backends on the
// host side of a veth pair. An app in the namespace that dials a
// service's address (10.96.0.10:9080, which exists nowhere: only the
// namespace's iptables rules make it work) is routed by the sidecar per
// the VirtualService; a TCP service address reaches its backend; an
// unknown destination passes through (ALLOW_ANY); an excluded port
// bypasses the sidecar; inbound connections reach the app through the
// sidecar; the sidecar's own connections are not looped back into it;
// and --cleanup removes every rule.
func TestProxyInitCapture(t *testing.T) {
	ns := newNetns(t)
	bin := buildSharedGitmesh(t)

	hostBackend := func(name string) *httptest.Server {
		s := httptest.NewUnstartedServer(echoHandler(name))
		ln, err := net.Listen("tcp", net.JoinHostPort(ns.hostIP, "0"))
		if err != nil {
			t.Fatal(err)
		}
		s.Listener = ln
		s.Start()
		t.Cleanup(s.Close)
		return s
	}
	v1, v2 := hostBackend("v1"), hostBackend("v2")
	outside, direct := hostBackend("outside"), hostBackend("direct")
	db := tcpEchoOn(t, net.JoinHostPort(ns.hostIP, "0"), "db")

	repo := e2etest.NewGitRemote(t)
	repo.Push("capture policy", capturePolicy(ns.hostIP, e2etest.PortOf(v1), e2etest.PortOf(v2), e2etest.PortOf(db)))
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, net.JoinHostPort(ns.hostIP, "0"))

	// The init container, then the app's own server (on loopback, as an
	// app in a pod listens), then the sidecar.
	ns.exec(bin, "proxy-init", "--exclude-outbound-ports", e2etest.PortOf(direct))
	rules := ns.exec("iptables-save", "-t", "nat")
	for _, want := range []string{"GITMESH_OUTPUT", "--uid-owner 1337", "REDIRECT --to-ports 15001", "REDIRECT --to-ports 15006"} {
		if !strings.Contains(rules, want) {
			t.Fatalf("iptables-save in the namespace lacks %q:\n%s", want, rules)
		}
	}
	ns.exec(bin, "proxy-init", "--exclude-outbound-ports", e2etest.PortOf(direct)) // idempotent
	if again := ns.exec("iptables-save", "-t", "nat"); strings.Count(again, "-j GITMESH_OUTPUT") != 1 {
		t.Fatalf("after a second proxy-init, jumps to GITMESH_OUTPUT:\n%s", again)
	}
	app, err := ns.listen("127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	appSrv := &http.Server{Handler: echoHandler("app")}
	go appSrv.Serve(app)
	t.Cleanup(func() { appSrv.Close() })
	// The controller listens on the host's non-loopback address, so its
	// control plane is locked (--xds-auth defaults to required there): the
	// sidecar joins with the join token, as a proxy on another host would.
	if m.ctrl.XDSAuth != "required" {
		t.Fatalf("xds auth %q on %s; want required off loopback", m.ctrl.XDSAuth, m.ctrl.XDSAddr)
	}
	startCapturedProxy(t, ns, bin, m.ctrl.XDSAddr, m.ctrl.JoinToken, m.ctrl.CABundle)

	appClient := &http.Client{Transport: &http.Transport{DialContext: ns.dial}, Timeout: 5 * time.Second}
	t.Cleanup(appClient.CloseIdleConnections)
	get := func(url, host string) (*http.Response, string, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return nil, "", err
		}
		if host != "" {
			req.Host = host
		}
		resp, err := appClient.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}

	e2etest.Eventually(t, 30*time.Second, "the app reaches reviews v2 at its service address", func() string {
		resp, body, err := get("http://10.96.0.10:9080/", "")
		if err != nil {
			return err.Error()
		}
		if resp.StatusCode != 200 || body != "v2" {
			return fmt.Sprintf("%d %q", resp.StatusCode, body)
		}
		return ""
	})

	t.Run("service address routed per the VirtualService", func(t *testing.T) {
		for _, host := range []string{"", "reviews.shop.svc.cluster.local", "reviews:9080", "not-in-the-mesh.example"} {
			n := 5
			if host == "not-in-the-mesh.example" {
				n = 1 // each waits for the neighbour lookup to fail
			}
			for range n {
				resp, body, err := get("http://10.96.0.10:9080/", host)
				switch {
				case err != nil:
					t.Fatalf("Host %q: %v", host, err)
				case host == "not-in-the-mesh.example":
					// ALLOW_ANY: an unknown Host goes to the original
					// destination, which does not exist (and the
					// request never leaves the namespace).
					if resp.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("Host %q: %d %q; want 503 from PassthroughCluster", host, resp.StatusCode, body)
					}
				case body != "v2" || resp.Header.Get("X-Echo-X-Request-Id") == "":
					t.Errorf("Host %q: %q (x-request-id %q); want v2 through the sidecar", host, body, resp.Header.Get("X-Echo-X-Request-Id"))
				}
			}
		}
	})

	t.Run("TCP service address", func(t *testing.T) {
		c, err := ns.dial(context.Background(), "tcp", "10.96.0.20:5432")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "ping\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "db:ping\n" {
			t.Errorf("read %q, %v; want %q", line, err, "db:ping\n")
		}
	})

	t.Run("unknown destination passes through", func(t *testing.T) {
		resp, body, err := get(outside.URL+"/", "unknown.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if body != "outside" || resp.Header.Get("X-Echo-X-Request-Id") == "" {
			t.Errorf("%d %q (x-request-id %q); want outside through the sidecar's PassthroughCluster", resp.StatusCode, body, resp.Header.Get("X-Echo-X-Request-Id"))
		}
	})

	t.Run("excluded port bypasses the sidecar", func(t *testing.T) {
		// Host reviews would be routed to v2 if the sidecar saw it.
		resp, body, err := get(direct.URL+"/", "reviews.shop.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		if body != "direct" || resp.Header.Get("X-Echo-X-Request-Id") != "" {
			t.Errorf("%q (x-request-id %q); want direct, untouched", body, resp.Header.Get("X-Echo-X-Request-Id"))
		}
	})

	t.Run("inbound reaches the app through the sidecar", func(t *testing.T) {
		// From the host, as another pod would: to the pod's address and
		// the app's port, which only iptables sends to the sidecar.
		c := &http.Client{Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://" + net.JoinHostPort(ns.nsIP, "8080") + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "app" || resp.Header.Get("X-Echo-X-Request-Id") == "" {
			t.Errorf("%q (x-request-id %q); want app through the sidecar's inbound listener", body, resp.Header.Get("X-Echo-X-Request-Id"))
		}
	})

	t.Run("cleanup removes the rules", func(t *testing.T) {
		appClient.CloseIdleConnections()
		ns.exec(bin, "proxy-init", "--cleanup")
		if rules := ns.exec("iptables-save", "-t", "nat"); strings.Contains(rules, "GITMESH") {
			t.Fatalf("after --cleanup:\n%s", rules)
		}
		resp, body, err := get(outside.URL+"/", "reviews.shop.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		if body != "outside" || resp.Header.Get("X-Echo-X-Request-Id") != "" {
			t.Errorf("%q (x-request-id %q); want outside, reached directly", body, resp.Header.Get("X-Echo-X-Request-Id"))
		}
		ns.exec(bin, "proxy-init", "--cleanup") // nothing left: still fine
	})
}

// startCapturedProxy runs `gitmesh proxy` in the namespace as uid 1337,
// as a sidecar container would, until the test ends. With a join token it
// joins the locked control plane, verifying it with caBundle.
func startCapturedProxy(t *testing.T, ns *netns, bin, xdsAddr, joinToken string, caBundle []byte) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"proxy", "--xds", xdsAddr, "--id", "app-1", "--service", "app", "--namespace", "shop",
		"--labels", "app=app", "--outbound", "127.0.0.1:15001", "--inbound", net.JoinHostPort(ns.nsIP, "15006"),
		"--app", "127.0.0.1:8080", "--interception-mode", "REDIRECT", "--log-level", "debug"}
	if joinToken != "" {
		// Beside the shared binary, where uid 1337 can read them.
		tokenFile, caFile := filepath.Join(filepath.Dir(bin), "join-token"), filepath.Join(filepath.Dir(bin), "xds-ca.pem")
		if err := os.WriteFile(tokenFile, []byte(joinToken), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(caFile, caBundle, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--join-token-file", tokenFile, "--xds-ca-file", caFile)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := ns.start(cmd, proxyUID); err != nil {
		t.Fatalf("starting the proxy in %s: %v", ns.name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("proxy log:\n%s", b)
		}
	})
}

// buildSharedGitmesh builds the gitmesh binary where another uid (the
// proxy's 1337) can run it.
func buildSharedGitmesh(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gitmesh-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitmesh")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/gitmesh/gitmesh/cmd/gitmesh").CombinedOutput(); err != nil {
		t.Fatalf("building gitmesh: %v\n%s", err, out)
	}
	return bin
}

// echoHandler answers its name and echoes the request's headers as
// X-Echo-<name>.
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range r.Header {
			w.Header().Set("X-Echo-"+k, strings.Join(v, ","))
		}
		io.WriteString(w, name)
	})
}

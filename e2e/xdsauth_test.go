//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

// TestLockedControlPlane: with --xds-auth required, a real `gitmesh
// proxy` joins with the controller's join token, talks ADS over mTLS and
// serves traffic; a proxy with a wrong token exits with "xds: join
// refused"; a proxy without a token never becomes a node.
func TestLockedControlPlane(t *testing.T) {
	bin := buildGitmesh(t)
	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	repo := e2etest.NewGitRemote(t)
	sha := repo.Push("reviews: all to v2", reviewsPolicy(strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://"), allV2))
	stateDir := t.TempDir()
	cfg := controllerConfig(t, repo.URL, stateDir, 200*time.Millisecond)
	cfg.XDSAuth = xdsauth.AuthRequired
	m := startControllerConfig(t, cfg)
	if m.ctrl.XDSAuth != xdsauth.AuthRequired {
		t.Fatalf("xds auth %q", m.ctrl.XDSAuth)
	}
	caFile := filepath.Join(t.TempDir(), "xds-ca.pem")
	if err := os.WriteFile(caFile, m.ctrl.CABundle, 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(stateDir, "join-token")

	// Without a token: an in-process proxy dialling plain gRPC.
	e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "intruder", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: testnet.FreeAddr(t),
	})

	t.Run("wrong token", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(bad, []byte("not-the-join-token-0123456789"), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "proxy", "--xds", m.ctrl.XDSAddr, "--id", "client-2", "--service", "client",
			"--labels", "app=client", "--outbound", testnet.FreeAddr(t), "--join-token-file", bad, "--xds-ca-file", caFile).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !bytes.Contains(out, []byte("xds: join refused:")) {
			t.Fatalf("gitmesh proxy with a wrong token: %v\n%s", err, out)
		}
	})

	outbound := testnet.FreeAddr(t)
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "proxy", "--log-level", "info", "--xds", m.ctrl.XDSAddr, "--id", "client-1", "--service", "client",
		"--labels", "app=client", "--outbound", outbound, "--admin", testnet.FreeAddr(t),
		"--join-token-file", tokenFile, "--xds-ca-file", caFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("proxy log:\n%s", b)
		}
	})

	e2etest.Eventually(t, 30*time.Second, "the joined proxy synced", func() string { return synced(m, sha, 1) })
	if why := only(e2etest.Split(outbound, "reviews", 20), "v2"); why != "" {
		t.Fatalf("through the joined proxy: %s", why)
	}
	st := m.status()
	var ids []string
	for _, p := range st.Proxies {
		ids = append(ids, p.ID)
		if p.ID == "client-1" && p.State != admin.StateSynced {
			t.Errorf("client-1 %s", p.State)
		}
	}
	if len(ids) != 1 || ids[0] != "client-1" {
		t.Errorf("proxies %v; want only client-1 (the intruder has no certificate)", ids)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/controller"
)

// startBareController starts a controller on loopback whose repository has
// no revision yet: enough for the admin API. It returns the admin URL and
// the token file.
func startBareController(t *testing.T) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stateDir := t.TempDir()
	c, err := controller.Start(ctx, controller.Config{
		RepoURL: t.TempDir(), Path: ".", Interval: time.Hour,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", StateDir: stateDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = c.Wait()
	})
	return "http://" + c.AdminAddr, filepath.Join(stateDir, "admin-token")
}

// deadURL is a loopback URL nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestClientContext: after `gitmesh login`, the client commands reach the
// controller from another directory through the client configuration, with
// flag > environment > configuration precedence; unreachable controllers
// and refused tokens say what to run; logout forgets the context.
func TestClientContext(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	t.Setenv("GITMESH_CONTROLLER", "")
	t.Setenv("GITMESH_TOKEN", "")
	url, tokenFile := startBareController(t)
	other, _ := startBareController(t)
	dead := deadURL(t)
	t.Chdir(t.TempDir())
	cfgPath := filepath.Join(cfgHome, "gitmesh", "config")

	if out, code := runCLI(t, "login", "--controller", url, "--token-file", tokenFile, "--context", "lab"); code != 0 {
		t.Fatalf("login: exit %d: %s", code, out)
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file %s: %v, mode %v; want 0600", cfgPath, err, fi.Mode())
	}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     []string
	}{
		{name: "status from the context", args: []string{"status", "-o", "json"}, want: []string{`"proxies"`}},
		{name: "history from the context", args: []string{"history"}, want: []string{"REVISION"}},
		{name: "ca status from the context", args: []string{"ca", "status"}, want: []string{"CA:"}},
		{name: "pause with the context's token", args: []string{"pause"}, wantCode: 1, want: []string{"no rollout in flight"}},
		{name: "environment beats the configuration", env: map[string]string{"GITMESH_CONTROLLER": dead}, args: []string{"status"}, wantCode: 2,
			want: []string{"controller at " + dead + " (from GITMESH_CONTROLLER) is not answering", "gitmesh up", "gitmesh login --controller URL"}},
		{name: "the flag beats the environment", env: map[string]string{"GITMESH_CONTROLLER": dead}, args: []string{"status", "--controller", url, "-o", "json"}, want: []string{`"proxies"`}},
		{name: "the context's token goes to its controller only", args: []string{"pause", "--controller", other}, wantCode: 2, want: []string{"no admin token for " + other}},
		{name: "a wrong token says where it came from", env: map[string]string{"GITMESH_TOKEN": "wrong"}, args: []string{"pause"}, wantCode: 2,
			want: []string{"answered 401 to the admin token from GITMESH_TOKEN", "gitmesh login --controller " + url}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, code := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("gitmesh %s: exit %d; want %d\n%s", strings.Join(tt.args, " "), code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("gitmesh %s: output does not say %q:\n%s", strings.Join(tt.args, " "), w, out)
				}
			}
		})
	}

	t.Run("a JSON configuration with top-level fields", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"controller": url, "tokenFile": tokenFile})
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runCLI(t, "status", "-o", "json")
		var st admin.Status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: exit %d: %s", code, out)
		}
		if out, code := runCLI(t, "pause"); code != 1 {
			t.Fatalf("pause: exit %d; want 1 (token accepted, nothing to pause): %s", code, out)
		}
	})

	t.Run("login refuses a wrong token", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runCLI(t, "login", "--controller", url, "--token-file", bad)
		if code != 2 || !strings.Contains(out, "401") || !strings.Contains(out, bad) {
			t.Fatalf("login with a wrong token: exit %d: %s", code, out)
		}
	})

	t.Run("logout", func(t *testing.T) {
		if out, code := runCLI(t, "login", "--controller", dead, "--context", "gone", "--no-verify"); code != 0 {
			t.Fatalf("login --no-verify: exit %d: %s", code, out)
		}
		out, code := runCLI(t, "status")
		if code != 2 || !strings.Contains(out, `from context "gone"`) {
			t.Fatalf("status with the dead context: exit %d: %s", code, out)
		}
		if out, code := runCLI(t, "logout"); code != 0 || !strings.Contains(out, `"gone"`) {
			t.Fatalf("logout: exit %d: %s", code, out)
		}
		cfg, err := loadClientConfig(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.CurrentContext != "" || len(cfg.Contexts) != 0 {
			t.Errorf("after logout: %+v; want no context", cfg)
		}
		// The JSON file's top-level controller is left, then nothing.
		if out, code := runCLI(t, "logout"); code != 0 || !strings.Contains(out, "removed the controller") {
			t.Errorf("second logout: exit %d: %s", code, out)
		}
		if _, code := runCLI(t, "logout"); code != 1 {
			t.Errorf("third logout: exit %d; want 1", code)
		}
	})
}

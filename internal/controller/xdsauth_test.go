package controller

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

func TestAdminAuth(t *testing.T) {
	for _, tc := range []struct {
		mode string
		// want is the status of each path without a token.
		want map[string]int
	}{
		{AdminAuthWrites, map[string]int{"/api/v1/status": 200, "/api/v1/history": 200, "/metrics": 200, "/healthz": 200}},
		{AdminAuthAll, map[string]int{"/api/v1/status": 401, "/api/v1/history": 401, "/metrics": 401, "/healthz": 200, "/readyz": 503}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			c, _ := startController(t, Config{AdminAuth: tc.mode})
			for path, want := range tc.want {
				for _, token := range []string{"", c.Token} {
					req, err := http.NewRequest(http.MethodGet, "http://"+c.AdminAddr+path, nil)
					if err != nil {
						t.Fatal(err)
					}
					if token != "" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					w := want
					if token != "" && w == http.StatusUnauthorized {
						w = http.StatusOK
					}
					if resp.StatusCode != w {
						t.Errorf("GET %s (token %t) = %d; want %d", path, token != "", resp.StatusCode, w)
					}
				}
			}
		})
	}
	if _, err := Start(context.Background(), Config{RepoURL: "x", StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", AdminAuth: "reads"}); err == nil || !strings.Contains(err.Error(), "--admin-auth") {
		t.Errorf("Start with --admin-auth reads = %v; want refused", err)
	}
}

func TestXDSAuthMode(t *testing.T) {
	t.Run("loopback defaults to none", func(t *testing.T) {
		c, _ := startController(t, Config{})
		if c.XDSAuth != xdsauth.AuthNone || c.JoinToken != "" {
			t.Errorf("mode %q, join token %q; want none and no token", c.XDSAuth, c.JoinToken)
		}
	})
	t.Run("all interfaces default to required", func(t *testing.T) {
		c, _ := startController(t, Config{XDSAddr: ":0"})
		if c.XDSAuth != xdsauth.AuthRequired || c.JoinToken == "" || len(c.CABundle) == 0 {
			t.Errorf("mode %q; want required with a join token and a CA bundle", c.XDSAuth)
		}
	})
	t.Run("required writes the join token 0600", func(t *testing.T) {
		dir := t.TempDir()
		c, _ := startController(t, Config{XDSAuth: xdsauth.AuthRequired, StateDir: dir})
		path := filepath.Join(dir, "join-token")
		b, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(b)) != c.JoinToken || c.JoinToken == "" {
			t.Fatalf("join token file: %q, %v; controller's %q", b, err, c.JoinToken)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("join token file mode %v; want 0600", fi.Mode().Perm())
		}
	})
	t.Run("given join token file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "tok")
		if err := os.WriteFile(f, []byte("given-token-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, _ := startController(t, Config{XDSAuth: xdsauth.AuthRequired, JoinTokenFile: f})
		if c.JoinToken != "given-token-0123456789abcdef" {
			t.Errorf("join token %q", c.JoinToken)
		}
	})
}

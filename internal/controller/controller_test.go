package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func knownHostsLine(t *testing.T, host string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return host + " " + string(ssh.MarshalAuthorizedKey(k))
}

func TestGitAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fromDir := knownHostsLine(t, "a.example.com")
	fromFlag := knownHostsLine(t, "b.example.com")
	write("secret/known_hosts", fromDir)
	write("secret/username", "alice")
	write("secret/password", "pw-secret-3")
	flagFile := write("known_hosts", fromFlag)

	tests := []struct {
		name      string
		cfg       Config
		wantHosts []string
		wantErr   string
	}{
		{name: "none", cfg: Config{}},
		{name: "secret dir and known hosts flag are both trusted",
			cfg: Config{SecretDir: filepath.Join(dir, "secret"), SSHKnownHostsFile: flagFile}, wantHosts: []string{"a.example.com", "b.example.com"}},
		{name: "known hosts flag alone", cfg: Config{SSHKnownHostsFile: flagFile}, wantHosts: []string{"b.example.com"}},
		{name: "missing secret dir", cfg: Config{SecretDir: filepath.Join(dir, "nope")}, wantErr: "--secret-dir"},
		{name: "missing known hosts", cfg: Config{SSHKnownHostsFile: filepath.Join(dir, "nope")}, wantErr: "reading known hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := tt.cfg.gitAuth()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v; want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tt.wantHosts {
				if !strings.Contains(string(auth.KnownHosts), h) {
					t.Errorf("known hosts %q lack %s", auth.KnownHosts, h)
				}
			}
		})
	}
}

func TestStartRefusesBadCredentials(t *testing.T) {
	secret := t.TempDir()
	if err := os.WriteFile(filepath.Join(secret, "bearerToken"), []byte("tok-secret-4"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secret, "password"), []byte("pw-secret-4"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{
		RepoURL: "https://git.example.com/mesh.git", StateDir: t.TempDir(), SecretDir: secret,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
	})
	if err == nil || !strings.Contains(err.Error(), "bearerToken and username/password are both given") {
		t.Fatalf("got %v; want the conflict named", err)
	}
	for _, s := range []string{"tok-secret-4", "pw-secret-4"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error leaks %q: %v", s, err)
		}
	}
}

// TestFailedStartReleases: a start that fails after opening the state
// and binding the xDS listener releases both, so the next start on the
// same state dir and address succeeds.
func TestFailedStartReleases(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := xdsLis.Addr().String()
	xdsLis.Close()
	cfg := Config{RepoURL: "https://git.example.com/mesh.git", StateDir: t.TempDir(), XDSAddr: xdsAddr, AdminAddr: busy.Addr().String()}
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "admin API") {
		t.Fatalf("got %v; want the admin address refused", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.AdminAddr = "127.0.0.1:0"
	c, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("second start: %v", err)
	}
	cancel()
	_ = c.Wait()
}

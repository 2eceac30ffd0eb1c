package git

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/gitkit"
	"github.com/fluxcd/pkg/gittestserver"
	"golang.org/x/crypto/ssh"
)

// secretDir writes files into a new directory, as a mounted secret.
func secretDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// logBuffer returns a logger writing every level into the returned buffer.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// checkNoSecrets fails when any secret appears in any of texts.
func checkNoSecrets(t *testing.T, secrets []string, texts ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, text := range texts {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("secret %q leaked into %q", s, text)
			}
		}
	}
}

// bearerOnly is a gittestserver middleware that wants "Authorization:
// Bearer <token>" on every request.
func bearerOnly(token string) gittestserver.HTTPMiddleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Bearer realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestFetchPrivateHTTP(t *testing.T) {
	gitEnv(t)
	const password, token = "s3cr3t-Pa55-xyz", "tok-9f8e7d6c"
	basic := startServer(t, "alice", password)
	basicRepo := newTestRepo(t, basic.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})

	bearer := gittestserver.NewGitServer(t.TempDir())
	bearer.AddHTTPMiddlewares(bearerOnly(token))
	if err := bearer.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bearer.StopHTTP)
	bearerRepo := newTestRepo(t, bearer.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})

	tests := []struct {
		name    string
		url     string
		files   map[string]string
		want    string // revision; "" when an error is wanted
		wantMsg string
	}{
		{name: "basic auth", url: basic.HTTPAddress() + "/policy.git",
			files: map[string]string{"username": "alice\n", "password": password + "\n"},
			want:  "main@sha1:" + basicRepo.git("rev-parse", "HEAD")},
		{name: "bearer token", url: bearer.HTTPAddress() + "/policy.git",
			files: map[string]string{"bearerToken": token},
			want:  "main@sha1:" + bearerRepo.git("rev-parse", "HEAD")},
		{name: "wrong password", url: basic.HTTPAddress() + "/policy.git",
			files:   map[string]string{"username": "alice", "password": password + "-wrong"},
			wantMsg: "basic auth (username/password from --secret-dir "},
		{name: "wrong token", url: bearer.HTTPAddress() + "/policy.git",
			files:   map[string]string{"bearerToken": token + "-wrong"},
			wantMsg: "bearer token (bearerToken from --secret-dir "},
		{name: "basic auth where a token is wanted", url: bearer.HTTPAddress() + "/policy.git",
			files:   map[string]string{"username": "alice", "password": password},
			wantMsg: "basic auth (username/password from --secret-dir "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := LoadSecretDir(secretDir(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			log, logs := logBuffer()
			src := newSource(t, tt.url, Ref{}, WithAuth(auth), WithLogger(log))
			a, err := src.Fetch(context.Background())
			var msg string
			if tt.want != "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Revision != tt.want {
					t.Errorf("revision: got %q; want %q", a.Revision, tt.want)
				}
			} else {
				if !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("got %v; want errors.Is ErrAuthFailed", err)
				}
				msg = err.Error()
				t.Logf("error: %s", msg)
				if !strings.Contains(msg, tt.wantMsg) || !strings.Contains(msg, "rejected") {
					t.Errorf("got %q; want it to contain %q and %q", msg, tt.wantMsg, "rejected")
				}
			}
			checkNoSecrets(t, []string{password, token}, msg, logs.String(), src.URL(), auth.String())
		})
	}
}

func TestFetchPrivateHTTPS(t *testing.T) {
	gitEnv(t)
	const password = "s3cr3t-tls-Pa55"
	caPEM, certPEM, keyPEM := newTLSCert(t, "127.0.0.1")
	srv := gittestserver.NewGitServer(t.TempDir()).Auth("alice", password)
	if err := srv.StartHTTPS(certPEM, keyPEM, caPEM, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.StopHTTP)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	url := srv.HTTPAddress() + "/policy.git"
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("server URL %q is not https", url)
	}

	tests := []struct {
		name    string
		files   map[string]string
		wantErr bool
	}{
		{"caFile", map[string]string{"username": "alice", "password": password, "caFile": string(caPEM)}, false},
		{"ca.crt", map[string]string{"username": "alice", "password": password, "ca.crt": string(caPEM)}, false},
		{"no CA", map[string]string{"username": "alice", "password": password}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := LoadSecretDir(secretDir(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			src := newSource(t, url, Ref{}, WithAuth(auth))
			a, err := src.Fetch(context.Background())
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("got %v; want a certificate error", err)
				}
				checkNoSecrets(t, []string{password}, err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "main@sha1:" + repo.git("rev-parse", "HEAD"); a.Revision != want {
				t.Errorf("revision: got %q; want %q", a.Revision, want)
			}
		})
	}
}

// newTLSCert returns a CA and a server certificate and key it signed for
// host, all PEM.
func newTLSCert(t *testing.T, host string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gitmesh test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func TestFetchPrivateSSH(t *testing.T) {
	gitEnv(t)
	keyDir := t.TempDir()
	hostPub, hostPEM := newKey(t)
	if err := os.WriteFile(filepath.Join(keyDir, "gitkit.rsa"), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientPub, clientPEM := newKey(t)
	_, otherPEM := newKey(t)
	const passphrase = "pp-a1b2c3d4"
	encryptedPEM := newEncryptedKey(t, passphrase)
	allowed := map[string]bool{
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(clientPub))):        true,
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(encryptedPEM.pub))): true,
	}

	// Auth turns on gitkit's ssh key check (its password is for http only).
	srv := gittestserver.NewGitServer(t.TempDir()).KeyDir(keyDir).Auth("git", "unused")
	// The lookup is gittestserver package state, read by ListenSSH: set it,
	// listen, then put back the default (accept every key).
	srv.PublicKeyLookupFunc(func(content string) (*gitkit.PublicKey, error) {
		if !allowed[content] {
			return nil, errors.New("unknown key")
		}
		return &gitkit.PublicKey{Id: "test-user"}, nil
	})
	err := srv.ListenSSH()
	srv.PublicKeyLookupFunc(func(string) (*gitkit.PublicKey, error) { return &gitkit.PublicKey{Id: "test-user"}, nil })
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.StartSSH() }()
	t.Cleanup(func() { _ = srv.StopSSH() })
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	head := "main@sha1:" + repo.git("rev-parse", "HEAD")

	addr := strings.TrimPrefix(srv.SSHAddress(), "ssh://git@")
	host, port, _ := net.SplitHostPort(addr)
	knownLine := func(k ssh.PublicKey) string {
		return "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(k))
	}
	otherHostPub, _ := newKey(t)
	secrets := []string{passphrase, pemBody(clientPEM), pemBody(encryptedPEM.pem), pemBody(otherPEM)}

	tests := []struct {
		name    string
		files   map[string]string
		wantIs  error
		wantMsg string
	}{
		{name: "key and known_hosts", files: map[string]string{"identity": string(clientPEM), "identity.pub": "ignored", "known_hosts": knownLine(hostPub)}},
		{name: "encrypted key with its passphrase in password", files: map[string]string{
			"identity": string(encryptedPEM.pem), "password": passphrase + "\n", "known_hosts": knownLine(hostPub)}},
		{name: "wrong host key", files: map[string]string{"identity": string(clientPEM), "known_hosts": knownLine(otherHostPub)},
			wantIs: ErrHostKeyUnknown, wantMsg: "offered by " + addr + " is not in known_hosts"},
		{name: "key the server refuses", files: map[string]string{"identity": string(otherPEM), "known_hosts": knownLine(hostPub)},
			wantIs: ErrAuthFailed, wantMsg: "ssh key (identity from --secret-dir "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := LoadSecretDir(secretDir(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			log, logs := logBuffer()
			src := newSource(t, srv.SSHAddress()+"/policy.git", Ref{}, WithAuth(auth), WithLogger(log))
			a, err := src.Fetch(context.Background())
			var msg string
			if tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if a.Revision != head {
					t.Errorf("revision: got %q; want %q", a.Revision, head)
				}
			} else {
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("got %v; want errors.Is %v", err, tt.wantIs)
				}
				msg = err.Error()
				t.Logf("error: %s", msg)
				if !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("got %q; want it to contain %q", msg, tt.wantMsg)
				}
			}
			checkNoSecrets(t, secrets, msg, logs.String(), auth.String(), auth.GoString())
		})
	}
}

// encryptedKey is an ssh key whose PEM is encrypted with a passphrase.
type encryptedKey struct {
	pub ssh.PublicKey
	pem []byte
}

func newEncryptedKey(t *testing.T, passphrase string) encryptedKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return encryptedKey{pub: sshPub, pem: pem.EncodeToMemory(block)}
}

// pemBody returns a line from the middle of a PEM block, to look for in
// logs and errors.
func pemBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	return lines[len(lines)/2]
}

package git

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoadSecretDir(t *testing.T) {
	_, key := newKey(t)
	hostPub, _ := newKey(t)
	knownHosts := "example.com " + string(sshMarshal(hostPub))
	tests := []struct {
		name    string
		files   map[string]string
		want    Auth   // compared field by field, From excluded
		wantErr string // substring; "" for success
	}{
		{name: "basic auth, trailing newlines trimmed", files: map[string]string{"username": "alice\n", "password": "pw-1\r\n"},
			want: Auth{Username: "alice", Password: "pw-1"}},
		{name: "bearer token", files: map[string]string{"bearerToken": "tok-1\n"}, want: Auth{BearerToken: "tok-1"}},
		{name: "identity with passphrase, identity.pub ignored", files: map[string]string{
			"identity": string(key), "identity.pub": "whatever", "password": "pp-1", "known_hosts": knownHosts},
			want: Auth{SSHKey: key, SSHKeyPassphrase: "pp-1", KnownHosts: []byte(knownHosts)}},
		{name: "caFile", files: map[string]string{"caFile": "CA1"}, want: Auth{CABundle: []byte("CA1")}},
		{name: "ca.crt wins over caFile", files: map[string]string{"caFile": "CA1", "ca.crt": "CA2"}, want: Auth{CABundle: []byte("CA2")}},
		{name: "unknown files ignored", files: map[string]string{"bearerToken": "tok-1", "README": "x"}, want: Auth{BearerToken: "tok-1"}},
		{name: "empty dir", files: map[string]string{}, wantErr: "none of username, password, bearerToken"},
		{name: "token and basic auth", files: map[string]string{"bearerToken": "tok-secret-1", "username": "alice", "password": "pw-secret-1"},
			wantErr: "bearerToken and username/password are both given"},
		{name: "token and identity", files: map[string]string{"bearerToken": "tok-secret-1", "identity": string(key)},
			wantErr: "identity and bearerToken are both given"},
		{name: "bad identity", files: map[string]string{"identity": "not a key pw-secret-1"}, wantErr: "reading identity from --secret-dir"},
		{name: "encrypted identity without passphrase", files: map[string]string{"identity": string(newEncryptedKey(t, "pp-secret-1").pem)},
			wantErr: "reading identity from --secret-dir"},
		{name: "bad known_hosts", files: map[string]string{"known_hosts": "example.com ssh-ed25519 !!!"}, wantErr: "reading known_hosts from --secret-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := secretDir(t, tt.files)
			got, err := LoadSecretDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v; want error containing %q", err, tt.wantErr)
				}
				checkNoSecrets(t, []string{"tok-secret-1", "pw-secret-1", "pp-secret-1", pemBody(key)}, err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.From != "--secret-dir "+dir {
				t.Errorf("From: got %q; want %q", got.From, "--secret-dir "+dir)
			}
			got.From = ""
			if got.String() != tt.want.String() || got.Username != tt.want.Username || got.Password != tt.want.Password ||
				got.BearerToken != tt.want.BearerToken || string(got.SSHKey) != string(tt.want.SSHKey) ||
				got.SSHKeyPassphrase != tt.want.SSHKeyPassphrase || string(got.KnownHosts) != string(tt.want.KnownHosts) ||
				string(got.CABundle) != string(tt.want.CABundle) {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}
}

func TestLoadSecretDirFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{"missing dir", func(t *testing.T, dir string) { os.RemoveAll(dir) }, "no such file or directory"},
		{"password is a directory", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "password"), 0o700) }, "reading password from --secret-dir"},
		{"password is a named pipe", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "password"), 0o600); err != nil {
				t.Skip(err)
			}
		}, "not a regular file"},
		{"oversized token", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bearerToken"), make([]byte, maxSecretFile+1), 0o600)
		}, "reading bearerToken from --secret-dir"},
		{"unreadable password", func(t *testing.T, dir string) {
			if os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			p := filepath.Join(dir, "password")
			os.WriteFile(p, []byte("pw-secret-2"), 0o000)
		}, "reading password from --secret-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := LoadSecretDir(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v; want error containing %q", err, tt.wantErr)
			}
			checkNoSecrets(t, []string{"pw-secret-2"}, err.Error())
		})
	}
}

func TestLoadKnownHosts(t *testing.T) {
	hostPub, _ := newKey(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("example.com "+string(sshMarshal(hostPub))), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name, path, wantErr string
	}{
		{"good", good, ""},
		{"empty", empty, "no host keys"},
		{"missing", filepath.Join(dir, "missing"), "file does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadKnownHosts(tt.path)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTools skips the test when a tool is missing, unless CI=true,
// where it fails: CI installs them (.ci/run).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required (Debian: gnupg, openssh-client): %v", tool, err)
			}
			t.Skipf("%s not installed (Debian: gnupg, openssh-client); skipping signed-commit test", tool)
		}
	}
}

// runIn runs a command in dir and returns its trimmed output.
func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gpgHome makes a GNUPGHOME short enough for gpg-agent's socket path, sets
// it for the test and stops its agent at the end.
func gpgHome(t *testing.T) string {
	t.Helper()
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GNUPGHOME", home)
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--kill", "gpg-agent").Run()
		_ = os.RemoveAll(home)
	})
	return home
}

// gpgKey generates an ed25519 signing key without passphrase and returns
// its fingerprint and armored public key.
func gpgKey(t *testing.T, email string) (fpr, armored string) {
	t.Helper()
	runIn(t, "", "gpg", "--batch", "--passphrase", "", "--quick-gen-key", "gitmesh test <"+email+">", "ed25519", "sign", "never")
	out := runIn(t, "", "gpg", "--batch", "--with-colons", "--list-keys", email)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatalf("no fingerprint for %s in:\n%s", email, out)
	}
	return fpr, runIn(t, "", "gpg", "--batch", "--armor", "--export", fpr)
}

// sshKey generates an ed25519 key in dir and returns the private key's
// path and the public key line.
func sshKey(t *testing.T, dir, name string) (path, pub string) {
	t.Helper()
	path = filepath.Join(dir, name)
	runIn(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	return path, readFile(t, path+".pub")
}

// tamper rewrites HEAD of the work repo as a commit with the same
// signature and another message, pushes it and returns its hash.
func tamper(r *testRepo) string {
	r.t.Helper()
	raw := r.git("cat-file", "commit", "HEAD")
	forged := strings.Replace(raw, "\n\n", "\n\nforged: ", 1) + "\n"
	cmd := exec.Command("git", "hash-object", "-t", "commit", "-w", "--stdin")
	cmd.Dir = r.work
	cmd.Stdin = strings.NewReader(forged)
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("writing forged commit: %v", err)
	}
	h := strings.TrimSpace(string(out))
	r.git("update-ref", "refs/heads/main", h)
	r.push()
	return h
}

func TestFetchVerify(t *testing.T) {
	requireTools(t, "gpg", "gpgconf", "ssh-keygen")
	gitEnv(t)
	gpgHome(t)
	keys := t.TempDir()
	trustedFpr, trustedPGP := gpgKey(t, "trusted@gitmesh.invalid")
	otherFpr, _ := gpgKey(t, "other@gitmesh.invalid")
	trustedSSH, trustedPub := sshKey(t, keys, "trusted")
	otherSSH, _ := sshKey(t, keys, "other")
	otherSSHFpr := strings.Fields(runIn(t, "", "ssh-keygen", "-l", "-f", otherSSH+".pub"))[1]

	pgpFile := filepath.Join(keys, "pgp.asc")
	sshFile := filepath.Join(keys, "allowed_signers")
	if err := os.WriteFile(pgpFile, []byte(trustedPGP+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// git's allowed_signers form: a principal before the key.
	if err := os.WriteFile(sshFile, []byte("# trusted signers\ntrusted@gitmesh.invalid "+trustedPub), 0o600); err != nil {
		t.Fatal(err)
	}
	vk, err := LoadVerifyKeys(pgpFile, sshFile)
	if err != nil {
		t.Fatal(err)
	}

	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"policy/a.yaml": "v: 0\n"})
	workDir := filepath.Join(t.TempDir(), "clone")
	src := newSource(t, srv.HTTPAddress()+"/policy.git", Ref{}, WithWorkDir(workDir), WithVerify(vk))

	gpgSign := []string{"-c", "user.signingkey=" + trustedFpr}
	sshSign := func(key string) []string {
		return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key}
	}
	n := 0
	commit := func(signing []string) string {
		n++
		repo.git("commit", "-q", "--allow-empty", "-m", "change")
		args := append(append([]string{}, signing...), "commit", "-q", "--amend", "--allow-empty", "-m", "change")
		if signing != nil {
			args = append(args, "-S")
		}
		repo.git(args...)
		repo.push()
		return repo.git("rev-parse", "HEAD")
	}

	lastGood := ""
	for _, tc := range []struct {
		name     string
		head     func() string
		wantErr  string // "" for a verified head
		wantBody string // in the reason
	}{
		{name: "gpg signed by trusted key", head: func() string { return commit(gpgSign) }},
		{name: "unsigned", head: func() string { return commit(nil) }, wantErr: "unsigned"},
		{name: "ssh signed by trusted key", head: func() string { return commit(sshSign(trustedSSH)) }},
		{name: "gpg signed by another key", head: func() string { return commit([]string{"-c", "user.signingkey=" + otherFpr}) },
			wantErr: "signed by an unknown OpenPGP key " + otherFpr},
		{name: "ssh signed by another key", head: func() string { return commit(sshSign(otherSSH)) },
			wantErr: "signed by an unknown ssh key " + otherSSHFpr},
		{name: "gpg tampered", head: func() string { commit(gpgSign); return tamper(repo) }, wantErr: "bad OpenPGP signature"},
		{name: "ssh tampered", head: func() string { commit(sshSign(trustedSSH)); return tamper(repo) }, wantErr: "bad ssh signature"},
		{name: "gpg signed again after refusals", head: func() string { return commit(gpgSign) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := tc.head()
			a, err := src.Fetch(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				if want := "main@sha1:" + head; a.Revision != want {
					t.Errorf("revision: got %q; want %q", a.Revision, want)
				}
				lastGood = head
				return
			}
			if err == nil {
				t.Fatalf("fetch of %s succeeded; want %q", head, tc.wantErr)
			}
			var verr *VerificationError
			if !errors.Is(err, ErrUnverified) || !errors.As(err, &verr) {
				t.Fatalf("error %v is not a VerificationError", err)
			}
			if verr.Commit != head {
				t.Errorf("refused commit: got %s; want %s", verr.Commit, head)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), head) {
				t.Errorf("error: got %q; want it to name %s and say %q", err, head, tc.wantErr)
			}
			if got := runIn(t, workDir, "git", "rev-parse", "HEAD"); got != lastGood {
				t.Errorf("work tree moved to a refused commit: HEAD %s; want %s", got, lastGood)
			}
			// Asking again refuses again; the unchanged-head path verifies too.
			if _, err := src.Fetch(context.Background()); !errors.Is(err, ErrUnverified) {
				t.Errorf("second fetch: got %v; want ErrUnverified", err)
			}
		})
	}

	t.Run("untrusted kind of signature", func(t *testing.T) {
		pgpOnly, err := New(srv.HTTPAddress()+"/policy.git", Ref{}, WithVerify(VerifyKeys{PGPKeyRing: []byte(trustedPGP)}))
		if err != nil {
			t.Fatal(err)
		}
		defer pgpOnly.Close()
		head := commit(sshSign(trustedSSH))
		_, err = pgpOnly.Fetch(context.Background())
		if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "no ssh keys are trusted") {
			t.Errorf("fetch of ssh-signed %s with OpenPGP keys only: got %v", head, err)
		}
	})
}

func TestWithVerifyRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    VerifyKeys
		wantErr string
	}{
		{name: "no keys", wantErr: "no OpenPGP or ssh public key"},
		{name: "blank files", keys: VerifyKeys{PGPKeyRing: []byte("\n"), SSHAllowedSigners: []byte("# none\n\n")}, wantErr: "no OpenPGP or ssh public key"},
		{name: "bad ssh line", keys: VerifyKeys{SSHAllowedSigners: []byte("ssh-ed25519 notbase64")}, wantErr: "line 1"},
		{name: "bad keyring", keys: VerifyKeys{PGPKeyRing: []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n")}, wantErr: "parsing OpenPGP keyring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New("/tmp/repo", Ref{}, WithVerify(tc.keys))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: got %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

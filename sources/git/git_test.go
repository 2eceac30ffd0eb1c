package git

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/gittestserver"
	"golang.org/x/crypto/ssh"

	"github.com/gitmesh/gitmesh/sources"
)

// gitEnv isolates the git CLI from the machine's configuration.
func gitEnv(t *testing.T) {
	t.Helper()
	for k, v := range map[string]string{
		"GIT_CONFIG_GLOBAL":   os.DevNull,
		"GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME":     "gitmesh test",
		"GIT_AUTHOR_EMAIL":    "test@gitmesh.invalid",
		"GIT_COMMITTER_NAME":  "gitmesh test",
		"GIT_COMMITTER_EMAIL": "test@gitmesh.invalid",
		"GIT_TERMINAL_PROMPT": "0",
	} {
		t.Setenv(k, v)
	}
}

// run runs git in dir and returns its trimmed output.
func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// testRepo is a bare repository (what servers serve) plus a work repo that
// pushes to it.
type testRepo struct {
	t    *testing.T
	bare string
	work string
}

// newTestRepo creates bare repo root/name and a work repo with one commit
// on main holding files.
func newTestRepo(t *testing.T, root, name string, files map[string]string) *testRepo {
	t.Helper()
	r := &testRepo{t: t, bare: filepath.Join(root, name), work: t.TempDir()}
	run(t, root, "init", "-q", "--bare", "-b", "main", r.bare)
	run(t, r.work, "init", "-q", "-b", "main")
	r.commit("initial", files)
	return r
}

// commit writes files ("" content deletes), commits, pushes all refs and
// returns the commit hash.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.work, name)
		if content == "" {
			if err := os.Remove(p); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	run(r.t, r.work, "add", "-A")
	run(r.t, r.work, "commit", "-q", "-m", msg)
	r.push()
	return run(r.t, r.work, "rev-parse", "HEAD")
}

func (r *testRepo) push() {
	r.t.Helper()
	run(r.t, r.work, "push", "-q", "-f", "--all", r.bare)
	run(r.t, r.work, "push", "-q", "-f", "--tags", r.bare)
}

func (r *testRepo) git(args ...string) string {
	r.t.Helper()
	return run(r.t, r.work, args...)
}

// startServer starts a gittestserver over HTTP on loopback.
func startServer(t *testing.T, auth ...string) *gittestserver.GitServer {
	t.Helper()
	srv := gittestserver.NewGitServer(t.TempDir())
	if len(auth) == 2 {
		srv.Auth(auth[0], auth[1])
	}
	if err := srv.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.StopHTTP)
	return srv
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newSource is New that fails the test on error; the source is closed
// when the test ends.
func newSource(t *testing.T, url string, ref Ref, opts ...Option) *Source {
	t.Helper()
	src, err := New(url, ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// fetchRevision fetches src, which must succeed, and checks the revision.
func fetchRevision(t *testing.T, src *Source, want string) *sources.Artifact {
	t.Helper()
	a, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision != want {
		t.Errorf("revision: got %q; want %q", a.Revision, want)
	}
	return a
}

func TestFetchBranchTwice(t *testing.T) {
	gitEnv(t)
	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{
		"policy/reviews.yaml": "v: 1\n",
		"policy/old.yaml":     "old: true\n",
	})
	first := repo.git("rev-parse", "HEAD")
	workDir := filepath.Join(t.TempDir(), "clone")
	src := newSource(t, srv.HTTPAddress()+"/policy.git", Ref{}, WithWorkDir(workDir))
	ctx := context.Background()

	a := fetchRevision(t, src, "main@sha1:"+first)
	if a.Dir != workDir {
		t.Errorf("dir: got %q; want %q", a.Dir, workDir)
	}
	if got := run(t, workDir, "rev-parse", "--is-shallow-repository"); got != "true" {
		t.Errorf("shallow: got %q; want %q", got, "true")
	}

	second := repo.commit("update", map[string]string{"policy/reviews.yaml": "v: 2\n", "policy/old.yaml": ""})
	a = fetchRevision(t, src, "main@sha1:"+second)
	if a.Dir != workDir {
		t.Errorf("work dir not reused: got %q; want %q", a.Dir, workDir)
	}
	if got := readFile(t, filepath.Join(a.Dir, "policy/reviews.yaml")); got != "v: 2\n" {
		t.Errorf("content: got %q; want %q", got, "v: 2\n")
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "policy/old.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted file still present: %v", err)
	}

	// Unchanged remote: same revision, no error.
	fetchRevision(t, src, "main@sha1:"+second)

	// A new Source on the same work dir reuses the clone (e.g. after a restart).
	src2, err := New(srv.HTTPAddress()+"/policy.git", Ref{}, WithWorkDir(workDir))
	if err != nil {
		t.Fatal(err)
	}
	if a, err = src2.Fetch(ctx); err != nil || a.Revision != "main@sha1:"+second {
		t.Errorf("reopened fetch: got %v, %v; want %q", a, err, "main@sha1:"+second)
	}
}

func TestFetchRefs(t *testing.T) {
	gitEnv(t)
	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "org/policy.git", map[string]string{"f.yaml": "v: 0\n"})
	c0 := repo.git("rev-parse", "HEAD")
	repo.git("tag", "v1.0.0")
	c1 := repo.commit("c1", map[string]string{"f.yaml": "v: 1\n"})
	repo.git("tag", "-a", "-m", "release", "v1.2.0") // annotated
	c2 := repo.commit("c2", map[string]string{"f.yaml": "v: 2\n"})
	repo.git("tag", "2.0.0")
	repo.git("tag", "not-semver")
	repo.git("checkout", "-q", "-b", "dev")
	c3 := repo.commit("c3", map[string]string{"f.yaml": "v: 3\n"})
	repo.git("checkout", "-q", "main")
	c4 := repo.commit("c4", map[string]string{"f.yaml": "v: 4\n"})
	repo.push()

	tests := []struct {
		name     string
		ref      Ref
		want     string
		wantFile string
	}{
		{"default branch", Ref{}, "main@sha1:" + c4, "v: 4\n"},
		{"branch", Ref{Branch: "dev"}, "dev@sha1:" + c3, "v: 3\n"},
		{"lightweight tag", Ref{Tag: "v1.0.0"}, "v1.0.0@sha1:" + c0, "v: 0\n"},
		{"annotated tag", Ref{Tag: "v1.2.0"}, "v1.2.0@sha1:" + c1, "v: 1\n"},
		{"semver range", Ref{SemVer: "^1.0"}, "v1.2.0@sha1:" + c1, "v: 1\n"},
		{"semver without v", Ref{SemVer: ">=1.5"}, "2.0.0@sha1:" + c2, "v: 2\n"},
		{"exact commit", Ref{Commit: c1}, "sha1:" + c1, "v: 1\n"},
		{"exact commit on other branch", Ref{Commit: c3}, "sha1:" + c3, "v: 3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, srv.HTTPAddress()+"/org/policy.git", tt.ref)
			a := fetchRevision(t, src, tt.want)
			if got := readFile(t, filepath.Join(a.Dir, "f.yaml")); got != tt.wantFile {
				t.Errorf("content: got %q; want %q", got, tt.wantFile)
			}
			// Fetching again is a no-op with the same answer.
			if b, err := src.Fetch(context.Background()); err != nil || b.Revision != tt.want {
				t.Errorf("refetch: got %v, %v; want %q", b, err, tt.want)
			}
			dir := a.Dir
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp work dir not removed by Close: %v", err)
			}
		})
	}
}

func TestFetchLocal(t *testing.T) {
	gitEnv(t)
	root := t.TempDir()
	repo := newTestRepo(t, root, "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	head := repo.git("rev-parse", "HEAD")
	t.Chdir(root)

	for _, url := range []string{"file://" + repo.bare, repo.bare, "policy.git", "./policy.git", repo.work} {
		t.Run(url, func(t *testing.T) {
			fetchRevision(t, newSource(t, url, Ref{Branch: "main"}), "main@sha1:"+head)
		})
	}
}

func TestFetchErrors(t *testing.T) {
	gitEnv(t)
	const password = "s3cr3t-Pa55"
	srv := startServer(t)
	authSrv := startServer(t, "alice", password)
	newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	newTestRepo(t, authSrv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/policy.git"
	l.Close()

	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		url     string
		ref     Ref
		opts    []Option
		ctx     context.Context
		wantIs  error
		wantMsg string
	}{
		{name: "unknown branch", url: srv.HTTPAddress() + "/policy.git", ref: Ref{Branch: "nope"},
			wantIs: ErrRefNotFound, wantMsg: `branch "nope" does not exist`},
		{name: "unknown tag", url: srv.HTTPAddress() + "/policy.git", ref: Ref{Tag: "v9"},
			wantIs: ErrRefNotFound, wantMsg: `tag "v9" does not exist`},
		{name: "no semver match", url: srv.HTTPAddress() + "/policy.git", ref: Ref{SemVer: "^3"},
			wantIs: ErrRefNotFound, wantMsg: "no tag matches semver range"},
		{name: "unknown commit", url: srv.HTTPAddress() + "/policy.git", ref: Ref{Commit: strings.Repeat("ab", 20)},
			wantIs: ErrRefNotFound, wantMsg: "is not on any branch or tag"},
		{name: "unknown repo", url: srv.HTTPAddress() + "/missing.git",
			wantIs: ErrRepoNotFound, wantMsg: "repository not found"},
		{name: "closed port", url: closed, wantIs: ErrUnreachable, wantMsg: "remote unreachable"},
		{name: "bad password", url: authSrv.HTTPAddress() + "/policy.git",
			opts:   []Option{WithAuth(Auth{Username: "alice", Password: password + "-wrong"})},
			wantIs: ErrAuthFailed, wantMsg: "authentication failed"},
		{name: "bad password in url", url: strings.Replace(authSrv.HTTPAddress(), "http://", "http://alice:"+password+"-wrong@", 1) + "/policy.git",
			wantIs: ErrAuthFailed, wantMsg: "authentication failed"},
		{name: "no credentials", url: authSrv.HTTPAddress() + "/policy.git",
			wantIs: ErrAuthFailed, wantMsg: "authentication failed"},
		{name: "canceled", url: srv.HTTPAddress() + "/policy.git", ctx: canceled,
			wantIs: context.Canceled, wantMsg: "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, tt.url, tt.ref, tt.opts...)
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, err := src.Fetch(ctx)
			if err == nil {
				t.Fatal("got no error")
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("got %T; want *FetchError", err)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("got %q; want errors.Is %q", err, tt.wantIs)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %q; want it to contain %q", msg, tt.wantMsg)
			}
			if strings.Contains(msg, password) || strings.Contains(fe.URL, password) {
				t.Errorf("error leaks the password: %q", msg)
			}
			if !strings.HasPrefix(msg, "fetching ") {
				t.Errorf("got %q; want prefix %q", msg, "fetching ")
			}
		})
	}
}

func TestFetchAuth(t *testing.T) {
	gitEnv(t)
	const password = "s3cr3t-Pa55"
	srv := startServer(t, "alice", password)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	head := repo.git("rev-parse", "HEAD")
	tests := []struct {
		name string
		url  string
		opts []Option
	}{
		{"option", srv.HTTPAddress() + "/policy.git", []Option{WithAuth(Auth{Username: "alice", Password: password})}},
		{"url user info", srv.HTTPAddressWithCredentials() + "/policy.git", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.url, Ref{}, tt.opts...)
			if strings.Contains(s.URL(), password) {
				t.Errorf("URL() leaks the password: %q", s.URL())
			}
			fetchRevision(t, s, "main@sha1:"+head)
		})
	}
}

func TestFetchSSH(t *testing.T) {
	gitEnv(t)
	// Host key: written where gitkit looks for it, so the test knows it.
	keyDir := t.TempDir()
	hostPub, hostPEM := newKey(t)
	if err := os.WriteFile(filepath.Join(keyDir, "gitkit.rsa"), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_, clientPEM := newKey(t)

	srv := gittestserver.NewGitServer(t.TempDir()).KeyDir(keyDir)
	if err := srv.ListenSSH(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.StartSSH() }()
	t.Cleanup(func() { _ = srv.StopSSH() })
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	head := repo.git("rev-parse", "HEAD")

	addr := strings.TrimPrefix(srv.SSHAddress(), "ssh://git@")
	host, port, _ := net.SplitHostPort(addr)
	otherPub, _ := newKey(t)
	tests := []struct {
		name       string
		knownHosts string
		wantErr    bool
	}{
		{"known host", "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(hostPub)), false},
		{"unknown host key", "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(otherPub)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, srv.SSHAddress()+"/policy.git", Ref{},
				WithAuth(Auth{SSHKey: clientPEM, KnownHosts: []byte(tt.knownHosts)}))
			if tt.wantErr {
				if _, err := s.Fetch(context.Background()); err == nil {
					t.Fatal("got no error")
				}
				return
			}
			fetchRevision(t, s, "main@sha1:"+head)
		})
	}
}

// newKey returns a new ed25519 public key and its private key as PEM.
func newKey(t *testing.T) (ssh.PublicKey, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub, pem.EncodeToMemory(block)
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		url  string
		ref  Ref
		opts []Option
		want string
	}{
		{"two refs", "/tmp/x", Ref{Branch: "main", Tag: "v1"}, nil, "more than one"},
		{"short commit", "/tmp/x", Ref{Commit: "abc123"}, nil, "40 lowercase hex"},
		{"bad semver", "/tmp/x", Ref{SemVer: "not a range"}, nil, "parsing semver range"},
		{"bad scheme", "ftp://example.com/x", Ref{}, nil, "unsupported repository url scheme"},
		{"empty url", "", Ref{}, nil, "empty repository url"},
		{"token and basic", "https://example.com/x", Ref{},
			[]Option{WithAuth(Auth{Username: "u", Password: "hunter2", BearerToken: "tok-secret-1"})}, "both bearer token and basic auth"},
		{"ssh without known hosts", "ssh://git@example.com/x", Ref{},
			[]Option{WithAuth(Auth{SSHKey: func() []byte { _, k := newKey(t); return k }()})}, "needs known hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.url, tt.ref, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %q", err)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	tests := []struct {
		in, wantURL, wantDisplay string
	}{
		{"https://u:pw@example.com/org/repo.git", "https://example.com/org/repo.git", "https://example.com/org/repo.git"},
		{"http://example.com:8080/repo", "http://example.com:8080/repo", "http://example.com:8080/repo"},
		{"ssh://git@example.com:2222/repo.git", "ssh://git@example.com:2222/repo.git", "ssh://example.com:2222/repo.git"},
		{"git://example.com/repo.git", "git://example.com/repo.git", "git://example.com/repo.git"},
		{"file:///srv/repo.git", "file:///srv/repo.git", "file:///srv/repo.git"},
		{"git@github.com:org/repo.git", "git@github.com:org/repo.git", "git@github.com:org/repo.git"},
		{"/srv/repo.git", "/srv/repo.git", "/srv/repo.git"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := parseURL(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if ep.url != tt.wantURL {
				t.Errorf("url: got %q; want %q", ep.url, tt.wantURL)
			}
			if ep.display != tt.wantDisplay {
				t.Errorf("display: got %q; want %q", ep.display, tt.wantDisplay)
			}
		})
	}
}

func TestAuthStringHidesSecrets(t *testing.T) {
	a := Auth{Username: "alice", Password: "pw-123", BearerToken: "tok-456", SSHKey: []byte("KEY-789"), SSHKeyPassphrase: "pp-0"}
	for _, s := range []string{a.String(), a.GoString()} {
		for _, secret := range []string{"pw-123", "tok-456", "KEY-789", "pp-0"} {
			if strings.Contains(s, secret) {
				t.Errorf("got %q; want no %q", s, secret)
			}
		}
	}
}

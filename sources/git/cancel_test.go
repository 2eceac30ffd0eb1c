package git

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// hangingListener accepts TCP connections on loopback and never answers;
// it closes them all when the test ends.
func hangingListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex // protects conns
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestFetchHangingServer(t *testing.T) {
	gitEnv(t)
	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	good := srv.HTTPAddress() + "/policy.git"
	addr := hangingListener(t)
	_, clientPEM := newKey(t)
	hostPub, _ := newKey(t)
	knownHosts := []byte("[127.0.0.1]:1 " + string(sshMarshal(hostPub)))

	tests := []struct {
		name string
		url  string
		opts []Option
	}{
		{"http", "http://" + addr + "/policy.git", nil},
		{"https", "https://" + addr + "/policy.git", nil},
		{"ssh", "ssh://git@" + addr + "/policy.git", []Option{WithAuth(Auth{SSHKey: clientPEM, KnownHosts: knownHosts})}},
		{"git", "git://" + addr + "/policy.git", nil},
	}
	const deadline = 300 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			workDir := filepath.Join(t.TempDir(), "clone")
			fetchRevision(t, newSource(t, good, Ref{}, WithWorkDir(workDir)), "main@sha1:"+repo.git("rev-parse", "HEAD"))

			for _, withTimeout := range []bool{false, true} {
				opts := append([]Option{WithWorkDir(workDir)}, tt.opts...)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				if withTimeout {
					// The Source's own timeout bounds it just as well.
					cancel()
					ctx, cancel = context.Background(), func() {}
					opts = append(opts, WithTimeout(deadline))
				}
				src := newSource(t, tt.url, Ref{}, opts...)
				start := time.Now()
				_, err := src.Fetch(ctx)
				took := time.Since(start)
				cancel()
				t.Logf("source timeout %v: Fetch returned after %s (deadline %s)", withTimeout, took.Round(time.Millisecond), deadline)
				if took > deadline+time.Second {
					t.Errorf("Fetch returned after %s; want within a second of the %s deadline", took, deadline)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v; want errors.Is context.DeadlineExceeded", err)
				}
				var fe *FetchError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), addr) {
					t.Errorf("got %q (%T); want a *FetchError naming %s", err, err, addr)
				}
			}

			// The work dir is still good for the next fetch.
			next := repo.commit("next "+tt.name, map[string]string{"f.yaml": "v: " + tt.name + "\n"})
			a := fetchRevision(t, newSource(t, good, Ref{}, WithWorkDir(workDir)), "main@sha1:"+next)
			if got := readFile(t, filepath.Join(a.Dir, "f.yaml")); got != "v: "+tt.name+"\n" {
				t.Errorf("content after a timed-out fetch: got %q", got)
			}
		})
	}
}

func sshMarshal(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }

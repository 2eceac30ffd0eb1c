package demo

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/syncbuf"
)

// freeBase returns a base whose layout, and the next one up, are free.
func freeBase(t *testing.T) int {
	t.Helper()
	for b := 30000; b < 60000; b += 700 {
		if checkLayout(b) == nil && checkLayout(b+layoutStep) == nil {
			return b
		}
	}
	t.Fatal("no free port layout between 30000 and 60000")
	return 0
}

// startDemo runs a demo in dir until the test ends and returns its Info.
func startDemo(t *testing.T, cfg Config) (Info, *syncbuf.Buffer) {
	t.Helper()
	out := &syncbuf.Buffer{}
	cfg.Out = out
	ready := make(chan Info, 1)
	cfg.Ready = func(info Info, _ []Step) { ready <- info }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the demo did not stop within 15s")
		}
	})
	select {
	case info := <-ready:
		return info, out
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("demo not ready within 60s")
	}
	return Info{}, nil
}

// TestSecondUpSaysWhereTheFirstRuns: a second Run on the directory of a
// running one fails at once (not after the state database's lock timeout)
// with the first one's pid and admin URL, and leaves the directory alone.
func TestSecondUpSaysWhereTheFirstRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gitmesh-demo")
	info, _ := startDemo(t, Config{Dir: dir, PortBase: freeBase(t)})

	begin := time.Now()
	err := Run(context.Background(), Config{Dir: dir, PortBase: freeBase(t)})
	took := time.Since(begin)
	var re *RunningError
	if !errors.As(err, &re) {
		t.Fatalf("second Run: %v; want a *RunningError", err)
	}
	if re.PID != os.Getpid() || re.AdminURL != info.AdminURL {
		t.Errorf("second Run named pid %d, admin %s; want %d, %s", re.PID, re.AdminURL, os.Getpid(), info.AdminURL)
	}
	for _, want := range []string{"already running", strconv.Itoa(os.Getpid()), info.AdminURL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
	if took > time.Second {
		t.Errorf("second Run took %s; want at once", took)
	}
	for _, sub := range []string{"policy", "state", "logs", lockFile} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err != nil {
			t.Errorf("the running demo's %s: %v", sub, err)
		}
	}
}

// TestPortLayout: a taken port moves the layout up by 1000 and the banner
// says so; with FixedPorts the start fails naming the port and
// --port-base, and removes the directory it created.
func TestPortLayout(t *testing.T) {
	base := freeBase(t)
	taken, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+offXDS)))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	t.Run("fixed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gitmesh-demo")
		errOut := &syncbuf.Buffer{}
		err := Run(context.Background(), Config{Dir: dir, PortBase: base, FixedPorts: true, Err: errOut})
		var pt *PortTakenError
		if !errors.As(err, &pt) || pt.Addr != taken.Addr().String() {
			t.Fatalf("Run: %v; want a *PortTakenError for %s", err, taken.Addr())
		}
		for _, want := range []string{"--port-base", "xDS", "removed"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed start left %s: %v", dir, err)
		}
		if !strings.Contains(errOut.String(), "up.log") {
			t.Errorf("the log's tail was not shown: %q", errOut.String())
		}
	})
	t.Run("found", func(t *testing.T) {
		info, out := startDemo(t, Config{Dir: filepath.Join(t.TempDir(), "gitmesh-demo"), PortBase: base})
		if info.PortBase != base+layoutStep || !info.Moved {
			t.Fatalf("layout at %d (moved %v); want %d", info.PortBase, info.Moved, base+layoutStep)
		}
		if want := "http://127.0.0.1:" + strconv.Itoa(base+layoutStep); info.AdminURL != want {
			t.Errorf("admin %s; want %s", info.AdminURL, want)
		}
		for _, want := range []string{strconv.Itoa(base + layoutStep), "the default layout was taken", info.AdminURL, info.TokenFile, info.LogFile} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("banner does not say %q:\n%s", want, out)
			}
		}
	})
}

// TestSteps: the tour's paths are absolute and quoted, so the steps run
// from any directory.
func TestSteps(t *testing.T) {
	tests := []struct {
		name, repo, want string
	}{
		{name: "plain", repo: "/tmp/d/policy", want: "git -C /tmp/d/policy commit"},
		{name: "space", repo: "/tmp/my demo/policy", want: "git -C '/tmp/my demo/policy' commit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := Steps(Info{RepoDir: tt.repo, Outbound: "127.0.0.1:1"}, "gitmesh")
			var all []string
			for _, s := range steps {
				all = append(all, s.Commands...)
			}
			if got := strings.Join(all, "\n"); !strings.Contains(got, tt.want) {
				t.Errorf("steps:\n%s\nwant %q", got, tt.want)
			}
		})
	}
}

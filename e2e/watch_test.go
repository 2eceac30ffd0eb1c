package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusWatchExitCodes runs the real gitmesh binary's `status --watch
// --revision SHA` as CI would, right after each push and writing to a
// file: it waits while the rollout goes through its waves and exits 0
// once a good change is promoted, and 1 once a change that makes traffic
// fail is rolled back automatically in wave 1; the file holds plain
// appended status blocks, without escape sequences.
func TestStatusWatchExitCodes(t *testing.T) {
	bin := buildGitmesh(t)
	cm := newCanaryMesh(t, wavesPolicy)
	watch := func(t *testing.T, sha string) (int, string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "watch.out")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "status", "--watch", "--revision", sha, "--interval", "100ms", "--timeout", "90s",
			"--controller", "http://"+cm.ctrl.AdminAddr)
		cmd.Stdout, cmd.Stderr = f, &stderr
		err = cmd.Run()
		f.Close()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("running %s: %v", bin, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return code, string(b) + stderr.String()
	}
	tests := []struct {
		name, routes string
		wantCode     int
		want         []string // in the output
	}{
		{name: "promoted exits 0", routes: allV2, wantCode: 0,
			want: []string{"Baking  wave 1/2", "Promoted  wave 2/2", " Promoted: every wave passed"}},
		{name: "rolled back exits 1", routes: toBad, wantCode: 1,
			want: []string{"Baking  wave 1/2", "RolledBack  wave 1/2", " RolledBack: analysis failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sha := cm.push(tc.name, tc.routes, wavesPolicy)
			start := time.Now()
			code, out := watch(t, sha)
			t.Logf("status --watch exited %d after %s", code, time.Since(start).Round(time.Millisecond))
			if code != tc.wantCode {
				t.Errorf("exit %d; want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "\033") {
				t.Errorf("output to a file has escape sequences:\n%q", out)
			}
			if n := strings.Count(out, "Revision:"); n < 2 {
				t.Errorf("%d status blocks; want the rollout watched as it changed:\n%s", n, out)
			}
		})
	}
}

package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{
			name: "a tagged install",
			bi: &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "41b6eff0c1d2e3f4a5b6c7d8e9f00112233445566"},
				{Key: "vcs.time", Value: "2026-12-05T03:51:04Z"},
				{Key: "vcs.modified", Value: "false"},
			}},
			want: "gitmesh v1.2.3 commit 41b6eff0c1d2 (2026-12-05T03:51:04Z) go1.25.1 " + platform,
		},
		{
			name: "a dirty checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "41b6eff0c1d2e3f4"},
				{Key: "vcs.modified", Value: "true"},
			}},
			want: "gitmesh (devel) commit 41b6eff0c1d2 (dirty) go1.25.1 " + platform,
		},
		{
			name: "no VCS information (go run)",
			bi:   &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"}},
			want: "gitmesh (devel) go1.25.1 " + platform,
		},
		{
			name: "no build information",
			want: "gitmesh (unknown) " + runtime.Version() + " " + platform,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildInfoFrom(tc.bi).String(); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

// TestVersionCommand: `gitmesh --version`, `gitmesh version` and
// `gitmesh version -o json` report this binary's build.
func TestVersionCommand(t *testing.T) {
	want := readBuildInfo()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, code := runCLI(t, args...)
			if code != 0 || out != want.String()+"\n" {
				t.Errorf("exit %d, output %q; want exit 0 and %q", code, out, want.String()+"\n")
			}
			if !strings.Contains(out, runtime.Version()) {
				t.Errorf("output %q does not name the Go version %s", out, runtime.Version())
			}
		})
	}
	t.Run("version -o json", func(t *testing.T) {
		out, code := runCLI(t, "version", "-o", "json")
		var got buildInfo
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
			t.Fatalf("exit %d, %v: %s", code, err, out)
		}
		if got != want || got.GoVersion != runtime.Version() || got.Version == "" {
			t.Errorf("got %+v; want %+v", got, want)
		}
	})
}

package review

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./review -update to accept):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestDiffGolden(t *testing.T) {
	r := fixtureRepo(t)
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		base, head string
		wantExit   int
		check      func(t *testing.T, rep *Report)
	}{
		{name: "weights", base: "v1.0", head: "weights", wantExit: 1, check: func(t *testing.T, rep *Report) {
			wantDetail(t, rep, TypeRoute, "reviews:9080", "v1 100% -> v1 90% / v2 10%")
		}},
		{name: "comment-only", base: "weights", head: "comment", wantExit: 0},
		{name: "new-subset", base: "comment", head: "subset", wantExit: 1, check: func(t *testing.T, rep *Report) {
			wantDetail(t, rep, TypeEndpoint, "reviews:9080/v3", "10.0.0.3:9080 (reviews-v3)")
		}},
		{name: "rollout-added", base: "subset", head: "rollout", wantExit: 1, check: func(t *testing.T, rep *Report) {
			if rep.Rollout == nil || !rep.Rollout.Changed || rep.Rollout.Rolls {
				t.Errorf("rollout = %+v; want changed, no rollout", rep.Rollout)
			}
		}},
		{name: "merge-removed-route", base: "main~1", head: "main", wantExit: 1, check: func(t *testing.T, rep *Report) {
			wantDetail(t, rep, TypeRoute, "ratings:9080", "prefix /admin: ratings 100%; ratings 100% -> ratings 100%")
		}},
		{name: "rollout-changed", base: "main", head: "rollout-v2", wantExit: 1},
		{name: "broken-yaml", base: "main", head: "broken", wantExit: 2},
		{name: "new-error", base: "main", head: "bad-subset", wantExit: 2, check: func(t *testing.T, rep *Report) {
			if rep.Diagnostics.NewErrors == 0 {
				t.Errorf("no new errors; want GM0201")
			}
		}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := repo.Load(ctx, tt.base, "", "policy", "")
			head := repo.Load(ctx, tt.head, "", "policy", "")
			rep, err := Compare(base, head, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := rep.ExitCode(); got != tt.wantExit {
				t.Errorf("ExitCode() = %d; want %d", got, tt.wantExit)
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
			stableVersions(rep)
			for _, f := range []struct{ format, ext string }{
				{FormatText, "txt"}, {FormatMarkdown, "md"}, {FormatJSON, "json"},
			} {
				var buf bytes.Buffer
				if err := rep.Write(&buf, f.format); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(buf.String(), "XXXXSECRET") || strings.Contains(buf.String(), "YYYYSECRET") {
					t.Errorf("%s output shows a secret", f.format)
				}
				checkGolden(t, tt.name+"."+f.ext+".golden", buf.Bytes())
			}
		})
	}
}

// wantDetail checks that some class has a change of typ on label with detail.
func wantDetail(t *testing.T, rep *Report, typ, label, detail string) {
	t.Helper()
	var seen []string
	for _, c := range rep.Classes {
		for _, ch := range c.Changes {
			if ch.Type == typ && ch.Label == label && ch.Detail == detail {
				return
			}
			seen = append(seen, ch.Type+" "+ch.Label+": "+ch.Detail)
		}
	}
	t.Errorf("no %s %s with detail %q; changes:\n%s", typ, label, detail, strings.Join(seen, "\n"))
}

// stableVersions replaces the compiled versions (content hashes, which change
// whenever the compiler's output does) with "version-N" in order of first
// appearance, keeping which versions are equal.
func stableVersions(rep *Report) {
	names := map[string]string{}
	name := func(v string) string {
		if _, ok := names[v]; !ok {
			names[v] = fmt.Sprintf("version-%d", len(names)+1)
		}
		return names[v]
	}
	for i := range rep.Classes {
		rep.Classes[i].BaseVersion = name(rep.Classes[i].BaseVersion)
		rep.Classes[i].HeadVersion = name(rep.Classes[i].HeadVersion)
	}
}

package git

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/sources"
)

func TestFetchRepoTooLarge(t *testing.T) {
	gitEnv(t)
	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 1\n"})
	workDir := filepath.Join(t.TempDir(), "clone")
	src := newSource(t, srv.HTTPAddress()+"/policy.git", Ref{}, WithWorkDir(workDir), WithMaxRepoSize(64<<10))
	fetchRevision(t, src, "main@sha1:"+repo.git("rev-parse", "HEAD"))

	big := repo.commit("big", map[string]string{"blob.bin": strings.Repeat("x", 100<<10)})
	_, err := src.Fetch(t.Context())
	if !errors.Is(err, sources.ErrRepoTooLarge) || !errors.Is(err, ErrRepoTooLarge) {
		t.Fatalf("got %v; want errors.Is ErrRepoTooLarge", err)
	}
	if !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "blob.bin") {
		t.Errorf("got %q; want it to name the commit and the file that crossed the limit", err)
	}
	// Refused before checkout: the big file was never written.
	if _, err := os.Stat(filepath.Join(workDir, "blob.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob.bin checked out despite the limit: %v", err)
	}

	// The next small commit is fetched as usual.
	small := repo.commit("small again", map[string]string{"blob.bin": ""})
	fetchRevision(t, src, "main@sha1:"+small)
}

func TestFetchCloneStaysBounded(t *testing.T) {
	gitEnv(t)
	srv := startServer(t)
	repo := newTestRepo(t, srv.Root(), "policy.git", map[string]string{"f.yaml": "v: 0\n"})
	workDir := filepath.Join(t.TempDir(), "clone")
	src := newSource(t, srv.HTTPAddress()+"/policy.git", Ref{}, WithWorkDir(workDir))
	maxSeen := 0
	for i := 1; i <= 3*maxPacks; i++ {
		head := repo.commit("c"+strconv.Itoa(i), map[string]string{"f.yaml": "v: " + strconv.Itoa(i) + "\n"})
		a := fetchRevision(t, src, "main@sha1:"+head)
		if got := readFile(t, filepath.Join(a.Dir, "f.yaml")); got != "v: "+strconv.Itoa(i)+"\n" {
			t.Fatalf("fetch %d: content %q", i, got)
		}
		packs, err := filepath.Glob(filepath.Join(workDir, ".git", "objects", "pack", "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		maxSeen = max(maxSeen, len(packs))
	}
	if maxSeen > maxPacks+1 {
		t.Errorf("the clone held %d packs; want at most %d", maxSeen, maxPacks+1)
	}
	if got := run(t, workDir, "rev-parse", "--is-shallow-repository"); got != "true" {
		t.Errorf("shallow after re-clones: got %q; want %q", got, "true")
	}
}

package git

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitmesh/gitmesh/sources"
)

// DefaultMaxRepoSize is the default bound on the files of one revision
// (256 MiB), see WithMaxRepoSize.
const DefaultMaxRepoSize = 256 << 20

// maxPacks is how many packs the clone may hold before the next fetch of
// new objects starts from a fresh shallow clone. Each fetch of a new
// revision adds one pack; go-git neither repacks nor prunes shallow clones.
const maxPacks = 8

// ErrRepoTooLarge is sources.ErrRepoTooLarge, wrapped by the *FetchError
// of a revision whose files exceed the limit of WithMaxRepoSize.
var ErrRepoTooLarge = sources.ErrRepoTooLarge

// WithMaxRepoSize bounds the total size of the files of a revision
// (default DefaultMaxRepoSize). A larger revision is refused before it is
// checked out, with a *FetchError wrapping ErrRepoTooLarge; it also bounds
// the clone's .git directory, which is re-cloned shallow past it.
func WithMaxRepoSize(n int64) Option {
	return func(s *Source) error {
		if n <= 0 {
			return fmt.Errorf("max repo size %d is not positive", n)
		}
		s.maxRepoSize = n
		return nil
	}
}

// checkSize refuses commit when the blobs of its tree add up to more than
// the Source's limit. It reads object headers only, never file contents.
func (s *Source) checkSize(repo *gogit.Repository, commit plumbing.Hash) error {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("reading tree of %s: %w", commit, err)
	}
	sizer, _ := repo.Storer.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	})
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	var total int64
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("walking tree of %s: %w", commit, err)
		}
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
			continue
		}
		var size int64
		if sizer != nil {
			size, err = sizer.EncodedObjectSize(e.Hash)
		} else {
			var b *object.Blob
			if b, err = repo.BlobObject(e.Hash); err == nil {
				size = b.Size
			}
		}
		if err != nil {
			return fmt.Errorf("sizing %s in %s: %w", name, commit, err)
		}
		total += size
		if total > s.maxRepoSize {
			return fmt.Errorf("%w: the files of commit %s add up to more than %d bytes (the limit; reached at %s)",
				ErrRepoTooLarge, commit, s.maxRepoSize, name)
		}
	}
}

// bounded returns repo, or a fresh empty clone in its place when the work
// dir's .git holds more than maxPacks packs or more than the Source's size
// limit, so the clone stays bounded however many revisions it fetched.
// Leftover temporary files of an interrupted fetch are removed.
func (s *Source) bounded(repo *gogit.Repository) (*gogit.Repository, error) {
	objects := filepath.Join(s.workDir, gogit.GitDirName, "objects")
	packs, size := 0, int64(0)
	err := filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "tmp_") {
			return os.Remove(p)
		}
		if strings.HasSuffix(d.Name(), ".pack") {
			packs++
		}
		if fi, err := d.Info(); err == nil {
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sizing work dir: %w", err)
	}
	if packs <= maxPacks && size <= s.maxRepoSize {
		return repo, nil
	}
	s.logger.Info("git clone outgrew its bounds; cloning afresh", "url", s.displayURL, "packs", packs, "bytes", size)
	entries, err := os.ReadDir(s.workDir)
	if err != nil {
		return nil, fmt.Errorf("emptying work dir: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.workDir, e.Name())); err != nil {
			return nil, fmt.Errorf("emptying work dir: %w", err)
		}
	}
	s.repo = nil
	return s.open()
}

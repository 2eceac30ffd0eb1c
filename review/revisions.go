package review

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitmesh/gitmesh/sources/git"
)

// WorktreeRevision is the Revision of files read from disk.
const WorktreeRevision = "worktree"

// ErrNoWorktree is returned by Repo.Worktree for a remote repository.
var ErrNoWorktree = errors.New("a remote repository has no work tree")

var hexSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Repo is where the revisions of a diff come from: a local Git repository
// (any revision go-git can resolve) or a remote URL (fetched with
// sources/git). Create it with OpenRepo.
type Repo struct {
	// local is set for a local repository; root is its work tree root.
	local *gogit.Repository
	root  string
	// url is set for a remote repository.
	url string
}

// OpenRepo opens location: a local directory inside a Git work tree, or
// an https://, http://, ssh://, git:// or file:// URL or scp-like address.
func OpenRepo(location string) (*Repo, error) {
	if isURL(location) {
		return &Repo{url: location}, nil
	}
	r, err := gogit.PlainOpenWithOptions(location, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("opening repository %s: %w", location, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, fmt.Errorf("opening work tree of %s: %w", location, err)
	}
	return &Repo{local: r, root: wt.Filesystem.Root()}, nil
}

func isURL(s string) bool {
	if strings.Contains(s, "://") {
		return true
	}
	// scp-like: user@host:path, not a Windows drive or a relative path.
	at, colon := strings.IndexByte(s, '@'), strings.IndexByte(s, ':')
	return at > 0 && colon > at && !strings.Contains(s[:colon], "/")
}

// Checkout is one revision's files on disk. Close removes them.
type Checkout struct {
	// Revision is "<ref>@sha1:<hex>" ("sha1:<hex>" for a bare SHA,
	// "worktree" for files on disk).
	Revision string
	// Dir is the root of the revision's files.
	Dir   string
	close func() error
}

// Close removes the checkout's temporary files (not a work tree's).
func (c *Checkout) Close() error {
	if c == nil || c.close == nil {
		return nil
	}
	return c.close()
}

// Worktree returns the local repository's files as they are on disk.
func (r *Repo) Worktree() (*Checkout, error) {
	if r.local == nil {
		return nil, ErrNoWorktree
	}
	return &Checkout{Revision: WorktreeRevision, Dir: r.root}, nil
}

// Checkout materializes ref: for a local repository anything go-git
// resolves (branch, remote-tracking branch like origin/main, tag, SHA,
// HEAD~1) written into a temporary directory; for a URL, a branch, a tag
// (refs/tags/NAME) or a 40-hex commit fetched with sources/git.
func (r *Repo) Checkout(ctx context.Context, ref string) (*Checkout, error) {
	if ref == "" {
		return nil, errors.New("resolving revision: empty ref")
	}
	if r.local == nil {
		return r.fetch(ctx, ref)
	}
	h, err := r.local.ResolveRevision(plumbing.Revision(ref))
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", ref, err)
	}
	commit, err := r.local.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s of %q: %w", h, ref, err)
	}
	dir, err := os.MkdirTemp("", "gitmesh-diff-")
	if err != nil {
		return nil, fmt.Errorf("checking out %q: %w", ref, err)
	}
	c := &Checkout{Revision: revisionString(ref, h.String()), Dir: dir, close: func() error { return os.RemoveAll(dir) }}
	if err := writeTree(ctx, commit, dir); err != nil {
		c.Close()
		return nil, fmt.Errorf("checking out %q: %w", ref, err)
	}
	return c, nil
}

// ResolveSHA returns the commit SHA that ref names in a local repository.
func (r *Repo) ResolveSHA(ref string) (string, error) {
	if r.local == nil {
		if hexSHA.MatchString(ref) {
			return ref, nil
		}
		return "", fmt.Errorf("resolving %q: only a 40-hex commit can be resolved in a remote repository", ref)
	}
	h, err := r.local.ResolveRevision(plumbing.Revision(ref))
	if err != nil {
		return "", fmt.Errorf("resolving %q: %w", ref, err)
	}
	return h.String(), nil
}

// revisionString writes "<ref>@sha1:<hex>", or "sha1:<hex>" when ref is
// the SHA itself.
func revisionString(ref, sha string) string {
	if strings.HasPrefix(sha, ref) && len(ref) >= 7 {
		return "sha1:" + sha
	}
	return ref + "@sha1:" + sha
}

// writeTree writes every regular file of commit's tree under dir.
func writeTree(ctx context.Context, commit *object.Commit, dir string) error {
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("reading tree: %w", err)
	}
	return tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.Mode != filemode.Regular && f.Mode != filemode.Executable {
			return nil // symlinks and submodules are not policy
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			return fmt.Errorf("file %q escapes the checkout", f.Name)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		rd, err := f.Reader()
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Name, err)
		}
		defer rd.Close()
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, rd); err != nil {
			out.Close()
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		return out.Close()
	})
}

// fetch clones ref of a remote repository with sources/git.
func (r *Repo) fetch(ctx context.Context, ref string) (*Checkout, error) {
	var gr git.Ref
	switch {
	case hexSHA.MatchString(ref):
		gr.Commit = ref
	case strings.HasPrefix(ref, "refs/tags/"):
		gr.Tag = strings.TrimPrefix(ref, "refs/tags/")
	case strings.HasPrefix(ref, "refs/heads/"):
		gr.Branch = strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "origin/"):
		gr.Branch = strings.TrimPrefix(ref, "origin/")
	case strings.ContainsAny(ref, "~^"):
		return nil, fmt.Errorf("resolving %q: relative revisions need a local repository (--repo DIR)", ref)
	default:
		gr.Branch = ref
	}
	src, err := git.New(r.url, gr)
	if err != nil {
		return nil, fmt.Errorf("fetching %q: %w", ref, err)
	}
	a, err := src.Fetch(ctx)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &Checkout{Revision: a.Revision, Dir: a.Dir, close: src.Close}, nil
}

// Load checks out ref (WorktreeRevision: the files on disk), builds path
// inside it and parses it (see the package-level Load). A ref that cannot
// be resolved or fetched is recorded in Side.Err. label, when not empty,
// replaces the Side's Revision (e.g. the live revision's own name).
func (r *Repo) Load(ctx context.Context, ref, label, path, namespace string) *Side {
	var c *Checkout
	var err error
	if ref == WorktreeRevision {
		c, err = r.Worktree()
	} else {
		c, err = r.Checkout(ctx, ref)
	}
	if label == "" {
		label = ref
		if c != nil {
			label = c.Revision
		}
	}
	if err != nil {
		return Failed(label, err)
	}
	defer c.Close()
	return Load(label, c.Dir, path, namespace)
}

// LiveSHA returns the commit of a Revision as the controller reports it
// ("main@sha1:<hex>" or "sha1:<hex>").
func LiveSHA(revision string) (string, error) {
	_, sha, ok := strings.Cut(revision, "sha1:")
	if !ok || !hexSHA.MatchString(sha) {
		return "", fmt.Errorf("reading live revision %q: want <ref>@sha1:<40 hex>", revision)
	}
	return sha, nil
}

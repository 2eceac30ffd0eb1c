package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/gitmesh/gitmesh/sources"
)

const remoteName = "origin"

// target is what a Ref resolved to on the remote.
type target struct {
	name    string                 // branch or tag name for the Revision ("" for a commit)
	refName plumbing.ReferenceName // remote ref to fetch ("" for a commit)
	commit  plumbing.Hash          // the commit, when the remote told us (peeled)
}

// Fetch returns the Artifact of the commit the Ref points at now. The first
// call clones (shallow where possible); later calls list the remote's refs
// and only fetch and check out when the commit changed, reusing the work
// dir. Errors are *FetchError.
func (s *Source) Fetch(ctx context.Context) (*sources.Artifact, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	repo, err := s.open()
	if err != nil {
		return nil, s.fetchError(ctx, err)
	}
	proxyOpts, release := withDialContext(ctx, endpoint{ssh: s.ssh})
	defer release()
	o := remoteOpts{auth: s.auth, caBundle: s.authCfg.CABundle, proxy: proxyOpts}
	var commit plumbing.Hash
	var name string
	if s.ref.Commit != "" {
		commit, err = s.fetchCommit(ctx, repo, o)
	} else {
		name, commit, err = s.fetchRef(ctx, repo, o)
	}
	if err != nil {
		return nil, s.fetchError(ctx, err)
	}
	rev := "sha1:" + commit.String()
	if name != "" {
		rev = name + "@" + rev
	}
	return &sources.Artifact{Revision: rev, Dir: s.workDir}, nil
}

// remoteOpts are the options every remote operation of one Fetch shares.
type remoteOpts struct {
	auth     transport.AuthMethod
	caBundle []byte
	proxy    transport.ProxyOptions
}

// fetchOptions returns go-git fetch options for specs (depth 0: full).
func (o remoteOpts) fetchOptions(depth int, specs ...config.RefSpec) *gogit.FetchOptions {
	return &gogit.FetchOptions{
		RemoteName:   remoteName,
		RefSpecs:     specs,
		Depth:        depth,
		Auth:         o.auth,
		CABundle:     o.caBundle,
		ProxyOptions: o.proxy,
		Tags:         gogit.NoTags,
		Force:        true,
	}
}

// open opens the clone in the work dir, creating the dir and an empty
// repository with the origin remote on first use.
func (s *Source) open() (*gogit.Repository, error) {
	if s.repo != nil {
		return s.repo, nil
	}
	if s.workDir == "" {
		dir, err := os.MkdirTemp("", "gitmesh-git-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		s.workDir, s.ownsDir = dir, true
	}
	repo, err := gogit.PlainOpen(s.workDir)
	switch {
	case err == nil:
		if err := s.setRemote(repo); err != nil {
			return nil, err
		}
	case errors.Is(err, gogit.ErrRepositoryNotExists):
		if err := os.MkdirAll(s.workDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		entries, err := os.ReadDir(s.workDir)
		if err != nil {
			return nil, fmt.Errorf("reading work dir: %w", err)
		}
		if len(entries) > 0 {
			return nil, fmt.Errorf("work dir %s is neither empty nor a git repository", s.workDir)
		}
		repo, err = gogit.PlainInit(s.workDir, false)
		if err != nil {
			return nil, fmt.Errorf("initializing work dir: %w", err)
		}
		if err := s.setRemote(repo); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("opening work dir: %w", err)
	}
	s.repo = repo
	return repo, nil
}

// setRemote points the origin remote of repo at the Source's URL.
func (s *Source) setRemote(repo *gogit.Repository) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("reading work dir config: %w", err)
	}
	rc, ok := cfg.Remotes[remoteName]
	if ok && len(rc.URLs) == 1 && rc.URLs[0] == s.url {
		return nil
	}
	cfg.Remotes[remoteName] = &config.RemoteConfig{Name: remoteName, URLs: []string{s.url}}
	if err := repo.SetConfig(cfg); err != nil {
		return fmt.Errorf("writing work dir config: %w", err)
	}
	return nil
}

// fetchRef resolves a branch, tag or semver Ref on the remote, fetches it
// shallowly when the local work tree is elsewhere, and checks it out.
func (s *Source) fetchRef(ctx context.Context, repo *gogit.Repository, o remoteOpts) (string, plumbing.Hash, error) {
	t, err := s.resolve(ctx, repo, o)
	if err != nil {
		return "", plumbing.ZeroHash, err
	}
	if head, err := repo.Head(); err == nil && head.Hash() == t.commit {
		s.logger.Debug("git revision unchanged", "url", s.displayURL, "ref", s.ref.String(), "commit", t.commit.String())
		if err := s.verify(repo, t.commit); err != nil {
			return "", plumbing.ZeroHash, err
		}
		return t.name, t.commit, nil
	}
	local := plumbing.NewRemoteReferenceName(remoteName, t.name)
	if t.refName.IsTag() {
		local = t.refName
	}
	spec := config.RefSpec(fmt.Sprintf("+%s:%s", t.refName, local))
	if repo, err = s.bounded(repo); err != nil {
		return "", plumbing.ZeroHash, err
	}
	err = repo.FetchContext(ctx, o.fetchOptions(1, spec))
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return "", plumbing.ZeroHash, fmt.Errorf("fetching %s: %w", t.refName, err)
	}
	// The ref may have moved since listing; what was fetched wins.
	ref, err := repo.Reference(local, true)
	if err != nil {
		return "", plumbing.ZeroHash, fmt.Errorf("reading fetched %s: %w", t.refName, err)
	}
	commit, err := peel(repo, ref.Hash())
	if err != nil {
		return "", plumbing.ZeroHash, err
	}
	if err := s.checkout(repo, commit); err != nil {
		return "", plumbing.ZeroHash, err
	}
	return t.name, commit, nil
}

// resolve lists the remote's refs and finds the Ref's target.
func (s *Source) resolve(ctx context.Context, repo *gogit.Repository, o remoteOpts) (target, error) {
	remote, err := repo.Remote(remoteName)
	if err != nil {
		return target{}, fmt.Errorf("reading remote: %w", err)
	}
	refs, err := remote.ListContext(ctx, &gogit.ListOptions{
		Auth: o.auth, CABundle: o.caBundle, ProxyOptions: o.proxy, PeelingOption: gogit.AppendPeeled,
	})
	if err != nil {
		return target{}, fmt.Errorf("listing remote refs: %w", err)
	}
	hashes := make(map[plumbing.ReferenceName]plumbing.Hash, len(refs))
	for _, r := range refs {
		if r.Type() == plumbing.HashReference {
			hashes[r.Name()] = r.Hash()
		}
	}
	// commitOf returns the peeled hash of a ref: an annotated tag's commit.
	commitOf := func(n plumbing.ReferenceName) plumbing.Hash {
		if h, ok := hashes[n+"^{}"]; ok {
			return h
		}
		return hashes[n]
	}
	switch {
	case s.ref.Tag != "":
		n := plumbing.NewTagReferenceName(s.ref.Tag)
		if _, ok := hashes[n]; !ok {
			return target{}, fmt.Errorf("%w: tag %q does not exist", ErrRefNotFound, s.ref.Tag)
		}
		return target{name: s.ref.Tag, refName: n, commit: commitOf(n)}, nil
	case s.ref.SemVer != "":
		tag, err := newestTag(hashes, s.constraint)
		if err != nil {
			return target{}, err
		}
		n := plumbing.NewTagReferenceName(tag)
		return target{name: tag, refName: n, commit: commitOf(n)}, nil
	default:
		branch := s.ref.Branch
		if branch == "" {
			branch = DefaultBranch
		}
		n := plumbing.NewBranchReferenceName(branch)
		h, ok := hashes[n]
		if !ok {
			return target{}, fmt.Errorf("%w: branch %q does not exist", ErrRefNotFound, branch)
		}
		return target{name: branch, refName: n, commit: h}, nil
	}
}

// newestTag returns the name of the newest tag satisfying c.
func newestTag(hashes map[plumbing.ReferenceName]plumbing.Hash, c *semver.Constraints) (string, error) {
	type cand struct {
		name string
		v    *semver.Version
	}
	var cands []cand
	for n := range hashes {
		if !n.IsTag() || strings.HasSuffix(string(n), "^{}") {
			continue
		}
		v, err := semver.NewVersion(n.Short())
		if err != nil || !c.Check(v) {
			continue
		}
		cands = append(cands, cand{n.Short(), v})
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%w: no tag matches semver range %q", ErrRefNotFound, c.String())
	}
	sort.Slice(cands, func(i, j int) bool {
		if cmp := cands[i].v.Compare(cands[j].v); cmp != 0 {
			return cmp > 0
		}
		return cands[i].name < cands[j].name
	})
	return cands[0].name, nil
}

// fetchCommit makes the exact commit present and checks it out. It tries a
// shallow fetch of the commit itself, and falls back to fetching every
// branch and tag when the server does not allow that.
func (s *Source) fetchCommit(ctx context.Context, repo *gogit.Repository, o remoteOpts) (plumbing.Hash, error) {
	want := plumbing.NewHash(s.ref.Commit)
	if head, err := repo.Head(); err == nil && head.Hash() == want {
		if err := s.verify(repo, want); err != nil {
			return plumbing.ZeroHash, err
		}
		return want, nil
	}
	if _, err := repo.CommitObject(want); err != nil {
		if repo, err = s.bounded(repo); err != nil {
			return plumbing.ZeroHash, err
		}
		err := repo.FetchContext(ctx, o.fetchOptions(1, config.RefSpec(want.String()+":refs/gitmesh/commit")))
		if errors.Is(err, gogit.ErrExactSHA1NotSupported) {
			err = repo.FetchContext(ctx, o.fetchOptions(0,
				config.RefSpec("+refs/heads/*:refs/remotes/origin/*"),
				config.RefSpec("+refs/tags/*:refs/tags/*")))
		}
		if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
			return plumbing.ZeroHash, fmt.Errorf("fetching commit: %w", err)
		}
		if _, err := repo.CommitObject(want); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("%w: commit %s is not on any branch or tag", ErrRefNotFound, want)
		}
	}
	if err := s.checkout(repo, want); err != nil {
		return plumbing.ZeroHash, err
	}
	return want, nil
}

// peel returns the commit h names, following annotated tags.
func peel(repo *gogit.Repository, h plumbing.Hash) (plumbing.Hash, error) {
	tag, err := repo.TagObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return h, nil
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading tag %s: %w", h, err)
	}
	c, err := tag.Commit()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("resolving tag %s to a commit: %w", tag.Name, err)
	}
	return c.Hash, nil
}

// verify checks commit's signature when WithVerify was given. It runs
// before every checkout and on an unchanged head too, so a work dir checked
// out before verification was turned on is not trusted.
func (s *Source) verify(repo *gogit.Repository, commit plumbing.Hash) error {
	if s.verifier == nil {
		return nil
	}
	c, err := repo.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("reading commit %s to verify it: %w", commit, err)
	}
	return s.verifier.verify(c)
}

// checkout makes the work tree exactly the tree of commit (detached HEAD),
// removing files that are not in it.
func (s *Source) checkout(repo *gogit.Repository, commit plumbing.Hash) error {
	if err := s.verify(repo, commit); err != nil {
		return err
	}
	if err := s.checkSize(repo, commit); err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fmt.Errorf("opening work tree: %w", err)
	}
	if err := wt.Checkout(&gogit.CheckoutOptions{Hash: commit, Force: true}); err != nil {
		return fmt.Errorf("checking out %s: %w", commit, err)
	}
	if err := wt.Clean(&gogit.CleanOptions{Dir: true}); err != nil {
		return fmt.Errorf("cleaning work tree: %w", err)
	}
	s.logger.Info("git revision checked out", "url", s.displayURL, "ref", s.ref.String(), "commit", commit.String())
	return nil
}

// Package git is a sources.Source that fetches Revisions of a policy
// repository with go-git.
//
// A Source points at one URL and one Ref (a branch, a tag, a semver range
// of tags or an exact commit). Its first Fetch clones shallowly into a work
// dir; later Fetches ask the remote for the ref's head first and only fetch
// and check out when it moved, so polling is cheap. Revisions are written as
// Flux writes them: "main@sha1:<hex>", "v1.2.0@sha1:<hex>", "sha1:<hex>".
//
// Errors are *FetchError values that wrap one of the sentinels
// (ErrRefNotFound, ErrAuthFailed, ErrUnreachable, ErrRepoNotFound) when the
// cause is known, so callers can report why with errors.Is. Credentials never
// appear in errors or logs.
//
// Credentials come from Auth, usually loaded with LoadSecretDir from files
// laid out as a Flux GitRepository secret. Fetch honours its context on
// every transport, ssh included (see dial.go). The clone stays bounded: a
// revision over WithMaxRepoSize is refused before checkout, and a clone
// that grew past 8 packs is re-cloned shallow.
package git

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/gitmesh/gitmesh/sources"
)

// DefaultBranch is the branch a Source follows when its Ref is empty.
const DefaultBranch = "main"

// Ref names what a Source follows. At most one field may be set; when none
// is, the Source follows DefaultBranch.
type Ref struct {
	// Branch is a branch name, e.g. "main".
	Branch string
	// Tag is a tag name, e.g. "v1.2.0".
	Tag string
	// SemVer is a semver range, e.g. ">=1.2.0 <2" or "^1.2"; the Source
	// follows the newest tag within it. Tags may have a leading "v".
	SemVer string
	// Commit is an exact commit, as 40 hex digits.
	Commit string
}

// String describes the ref for messages: "branch main", "tag v1.2.0",
// "semver ^1.2", "commit <hex>".
func (r Ref) String() string {
	switch {
	case r.Tag != "":
		return "tag " + r.Tag
	case r.SemVer != "":
		return "semver " + r.SemVer
	case r.Commit != "":
		return "commit " + r.Commit
	case r.Branch != "":
		return "branch " + r.Branch
	}
	return "branch " + DefaultBranch
}

var hexCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// validate checks that at most one field is set and that it is well formed.
func (r Ref) validate() (*semver.Constraints, error) {
	n := 0
	for _, s := range []string{r.Branch, r.Tag, r.SemVer, r.Commit} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("ref sets more than one of branch, tag, semver and commit: %+v", r)
	}
	if r.Commit != "" && !hexCommit.MatchString(r.Commit) {
		return nil, fmt.Errorf("commit %q is not 40 lowercase hex digits", r.Commit)
	}
	if r.SemVer == "" {
		return nil, nil
	}
	c, err := semver.NewConstraint(r.SemVer)
	if err != nil {
		return nil, fmt.Errorf("parsing semver range %q: %w", r.SemVer, err)
	}
	return c, nil
}

// Option configures a Source.
type Option func(*Source) error

// WithWorkDir sets the directory the clone lives in. It is created when
// missing, must otherwise be empty or hold a clone from an earlier Source
// (which is reused). If unset, Fetch creates a temporary directory that
// Close removes.
func WithWorkDir(dir string) Option {
	return func(s *Source) error {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("resolving work dir %q: %w", dir, err)
		}
		s.workDir = abs
		return nil
	}
}

// WithLogger sets the logger. If unset, nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) error {
		if l != nil {
			s.logger = l
		}
		return nil
	}
}

// WithAuth sets the credentials used to reach the remote (see Auth).
func WithAuth(a Auth) Option {
	return func(s *Source) error {
		s.authCfg = a
		return nil
	}
}

// WithTimeout bounds each Fetch (listing, fetching and checking out). Zero,
// the default, means only the caller's context bounds it.
func WithTimeout(d time.Duration) Option {
	return func(s *Source) error {
		if d < 0 {
			return fmt.Errorf("negative timeout %s", d)
		}
		s.timeout = d
		return nil
	}
}

// Source fetches Revisions of one Git repository at one Ref. Create it with
// New. Fetch and Close may be called from several goroutines; they are
// serialized.
type Source struct {
	url         string // what go-git dials: credentials removed, local paths absolute
	displayURL  string // url without any user info, for errors and logs
	ref         Ref
	constraint  *semver.Constraints
	authCfg     Auth
	auth        transport.AuthMethod
	authDesc    string   // which credential is used, for errors (see Auth.describe)
	ssh         bool     // the URL is ssh (see withDialContext)
	secrets     []string // strings redacted from every error
	logger      *slog.Logger
	timeout     time.Duration
	maxRepoSize int64
	verifier    *verifier // nil: commits are not verified (see WithVerify)

	// mu serializes Fetch and Close and guards the fields below.
	mu      sync.Mutex
	workDir string // "" until the first Fetch when no WithWorkDir was given
	ownsDir bool   // workDir was created by Fetch and is removed by Close
	repo    *gogit.Repository
}

var _ sources.Source = (*Source)(nil)

// New returns a Source for the repository at url and ref. url may be an
// https://, http://, ssh://, git:// or file:// URL, an scp-like address
// (git@host:org/repo.git) or a local path (absolute or relative to the
// working directory). User info in an http(s) URL is used as basic auth
// when WithAuth is not given. New does no I/O.
func New(url string, ref Ref, opts ...Option) (*Source, error) {
	constraint, err := ref.validate()
	if err != nil {
		return nil, fmt.Errorf("creating git source: %w", err)
	}
	s := &Source{
		ref:         ref,
		constraint:  constraint,
		logger:      slog.New(slog.DiscardHandler),
		maxRepoSize: DefaultMaxRepoSize,
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, fmt.Errorf("creating git source: %w", err)
		}
	}
	ep, err := parseURL(url)
	if err != nil {
		return nil, fmt.Errorf("creating git source: %w", err)
	}
	s.url, s.displayURL = ep.url, ep.display
	if ep.password != "" {
		s.secrets = append(s.secrets, ep.password)
	}
	if s.authCfg.isZero() && (ep.user != "" || ep.password != "") && ep.http {
		s.authCfg.Username, s.authCfg.Password = ep.user, ep.password
	}
	s.secrets = append(s.secrets, s.authCfg.secrets()...)
	s.ssh, s.authDesc = ep.ssh, s.authCfg.describe(ep)
	s.auth, err = s.authCfg.method(ep)
	if err != nil {
		return nil, fmt.Errorf("creating git source for %s: %w", s.displayURL, redact(err, s.secrets))
	}
	return s, nil
}

// URL returns the repository URL without credentials.
func (s *Source) URL() string { return s.displayURL }

// Ref returns the ref the Source follows.
func (s *Source) Ref() Ref { return s.ref }

// WorkDir returns the directory the clone lives in ("" before the first
// Fetch when no WithWorkDir was given).
func (s *Source) WorkDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workDir
}

// Close removes the work dir if Fetch created it (not one given with
// WithWorkDir). The Source must not be used afterwards.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo = nil
	if !s.ownsDir || s.workDir == "" {
		return nil
	}
	dir := s.workDir
	s.workDir, s.ownsDir = "", false
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing work dir: %w", err)
	}
	return nil
}

// endpoint is a parsed repository URL.
type endpoint struct {
	url, display   string
	user, password string
	http, ssh      bool
}

var scpLike = regexp.MustCompile(`^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:[^/\\]`)

// parseURL classifies raw and strips credentials from it.
func parseURL(raw string) (endpoint, error) {
	if raw == "" {
		return endpoint{}, errors.New("empty repository url")
	}
	if strings.Contains(raw, "://") {
		ep, err := transport.NewEndpoint(raw)
		if err != nil {
			return endpoint{}, fmt.Errorf("parsing repository url %q: %w", stripUserInfo(raw), err)
		}
		e := endpoint{user: ep.User, password: ep.Password}
		switch ep.Protocol {
		case "http", "https":
			e.http = true
		case "ssh":
			e.ssh = true
		case "git", "file":
		default:
			return endpoint{}, fmt.Errorf("unsupported repository url scheme %q", ep.Protocol)
		}
		e.display = stripUserInfo(raw)
		e.url = e.display
		if e.ssh && ep.User != "" {
			// ssh keeps its user name: it selects the account, it is no secret.
			e.url = raw
			if ep.Password != "" {
				e.url = strings.Replace(raw, ep.User+":"+ep.Password+"@", ep.User+"@", 1)
			}
		}
		return e, nil
	}
	if filepath.IsAbs(raw) || strings.HasPrefix(raw, ".") || !scpLike.MatchString(raw) {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return endpoint{}, fmt.Errorf("resolving repository path %q: %w", raw, err)
		}
		return endpoint{url: abs, display: abs}, nil
	}
	return endpoint{url: raw, display: raw, ssh: true}, nil
}

// stripUserInfo removes "user:password@" from a scheme://host URL.
func stripUserInfo(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return raw[:i+3] + rest[at+1:]
	}
	return raw
}

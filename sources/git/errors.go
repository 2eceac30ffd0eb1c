package git

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Sentinels wrapped by FetchError when the cause is known; check them with
// errors.Is.
var (
	// ErrRefNotFound: the branch, tag, semver range or commit has no match
	// on the remote.
	ErrRefNotFound = errors.New("reference not found")
	// ErrAuthFailed: the remote refused the credentials (or wanted some).
	ErrAuthFailed = errors.New("authentication failed")
	// ErrUnreachable: the remote could not be reached (refused connection,
	// unknown host, network down).
	ErrUnreachable = errors.New("remote unreachable")
	// ErrRepoNotFound: the server has no repository at that path.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrHostKeyUnknown: the ssh server's host key is not in the known
	// hosts given (a wrong host, or a changed key).
	ErrHostKeyUnknown = errors.New("ssh host key not trusted")
)

// FetchError is the error Source.Fetch returns. Its message never holds
// credentials.
type FetchError struct {
	// URL is the repository URL, credentials stripped.
	URL string
	// Ref describes what was fetched, e.g. "branch main" (see Ref.String).
	Ref string
	// Err is the cause; it wraps one of the sentinels when known.
	Err error

	secrets []string
}

// Error reads "fetching <ref> from <url>: <cause>".
func (e *FetchError) Error() string {
	msg := fmt.Sprintf("fetching %s from %s: %v", e.Ref, e.URL, e.Err)
	// Some go-git errors end in an empty detail ("authentication required: ").
	msg = strings.TrimSuffix(strings.TrimRight(msg, " "), ":")
	return redactString(msg, e.secrets)
}

// Unwrap returns Err.
func (e *FetchError) Unwrap() error { return e.Err }

// fetchError wraps err, classified, into a *FetchError. When ctx is done,
// the error wraps ctx.Err() whatever the transport made of the closed
// connection; an authentication failure says which credential failed.
func (s *Source) fetchError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	err = classify(err)
	if errors.Is(err, ErrAuthFailed) && !errors.Is(err, ErrHostKeyUnknown) {
		what := s.authDesc + " rejected"
		if s.authDesc == anonymousAccess {
			what = "the server wants credentials and none were given (see --secret-dir)"
		}
		err = fmt.Errorf("%s: %w", what, err)
	}
	return &FetchError{URL: s.displayURL, Ref: s.ref.String(), Err: err, secrets: s.secrets}
}

// classify wraps err with the sentinel for its cause, if one fits.
func classify(err error) error {
	var sentinel error
	switch {
	case errors.Is(err, ErrRefNotFound), errors.Is(err, ErrAuthFailed),
		errors.Is(err, ErrUnreachable), errors.Is(err, ErrRepoNotFound),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, ErrHostKeyUnknown):
		return err
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod),
		// x/crypto/ssh has no sentinel for a refused key.
		strings.Contains(err.Error(), "ssh: unable to authenticate"):
		sentinel = ErrAuthFailed
	case errors.Is(err, transport.ErrRepositoryNotFound):
		sentinel = ErrRepoNotFound
	case isNetError(err):
		sentinel = ErrUnreachable
	default:
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// isNetError reports whether err comes from failing to reach the remote.
func isNetError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	// Some transports flatten the cause into text; as a last resort,
	// recognise the kernel's wording.
	msg := err.Error()
	for _, s := range []string{"connection refused", "no such host", "network is unreachable", "no route to host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// redactError hides secrets in its message but keeps the chain for errors.Is.
type redactError struct {
	err     error
	secrets []string
}

func (e *redactError) Error() string { return redactString(e.err.Error(), e.secrets) }
func (e *redactError) Unwrap() error { return e.err }

// redact returns err with secrets hidden from its message.
func redact(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	return &redactError{err: err, secrets: secrets}
}

func redactString(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "***")
		}
	}
	return s
}

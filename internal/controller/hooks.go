package controller

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gitmesh/gitmesh/hooks"
	"github.com/gitmesh/gitmesh/sources/git"
)

// webhooks returns the receiver of /hooks/ that cfg.WebhookSecretFile
// turns on, triggering t; nil when the file is not set, so the hooks are
// never served unauthenticated.
func (cfg Config) webhooks(t hooks.Trigger, log *slog.Logger) (http.Handler, error) {
	if cfg.WebhookSecretFile == "" {
		return nil, nil
	}
	secret, err := hooks.LoadSecret(cfg.WebhookSecretFile)
	if err != nil {
		return nil, err
	}
	h, err := hooks.New(secret, t, hooks.WithBranch(cfg.followedBranch()), hooks.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("starting webhook receiver: %w", err)
	}
	return h, nil
}

// followedBranch is the branch the source follows, "" when it follows a
// tag, a semver range or a commit (then every push triggers a fetch).
func (cfg Config) followedBranch() string {
	switch {
	case cfg.Ref.Branch != "":
		return cfg.Ref.Branch
	case cfg.Ref.Tag != "" || cfg.Ref.SemVer != "" || cfg.Ref.Commit != "":
		return ""
	default:
		return git.DefaultBranch
	}
}

// withHooks serves /hooks/ with receiver (when not nil) and the rest with
// next.
func withHooks(receiver, next http.Handler) http.Handler {
	if receiver == nil {
		return next
	}
	mux := http.NewServeMux()
	mux.Handle("/hooks/", receiver)
	mux.Handle("/", next)
	return mux
}

package hooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// Trigger asks for a fetch of the source now. Trigger must not block and
// must be safe for concurrent use; triggers that arrive while one is
// pending may coalesce. *reconciler.Reconciler implements it.
type Trigger interface {
	Trigger()
}

// Defaults of a Handler.
const (
	// DefaultMaxBodyBytes bounds a webhook body (GitHub caps payloads at
	// 25 MB, but a push's ref is in the first bytes of a small payload).
	DefaultMaxBodyBytes = 1 << 20
	// DefaultReplayIDs is how many delivery ids are remembered.
	DefaultReplayIDs = 4096
	// DefaultReplayWindow is how long a delivery id is remembered.
	DefaultReplayWindow = time.Hour
)

// Handler serves /hooks/github, /hooks/gitlab and /hooks/generic. Create it
// with New.
type Handler struct {
	secret  []byte
	trigger Trigger
	branch  string
	maxBody int64
	log     *slog.Logger
	seen    *recent
	mux     *http.ServeMux
}

// Option configures a Handler.
type Option func(*options)

type options struct {
	branch    string
	maxBody   int64
	replayIDs int
	window    time.Duration
	log       *slog.Logger
}

// WithBranch makes pushes to other branches than branch answer 202 without
// a trigger. Default "": every push triggers (e.g. when following a tag).
func WithBranch(branch string) Option { return func(o *options) { o.branch = branch } }

// WithMaxBodyBytes bounds a request body; a larger one gets 413. Default
// DefaultMaxBodyBytes.
func WithMaxBodyBytes(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithReplayWindow remembers at most ids delivery ids for window each.
// Defaults DefaultReplayIDs and DefaultReplayWindow.
func WithReplayWindow(ids int, window time.Duration) Option {
	return func(o *options) { o.replayIDs, o.window = ids, window }
}

// WithLogger sets the logger. If nil (the default), logs are discarded.
// Secrets and signatures are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns a Handler that checks requests against secret and calls
// t.Trigger for each authenticated push. secret must not be empty: the
// receiver is never served unauthenticated.
func New(secret []byte, t Trigger, opts ...Option) (*Handler, error) {
	if len(secret) == 0 {
		return nil, errors.New("creating webhook receiver: the secret is empty")
	}
	o := options{maxBody: DefaultMaxBodyBytes, replayIDs: DefaultReplayIDs, window: DefaultReplayWindow}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		secret: append([]byte(nil), secret...), trigger: t, branch: o.branch, maxBody: o.maxBody,
		log: o.log, seen: newRecent(o.replayIDs, o.window, time.Now),
	}
	h.mux = http.NewServeMux()
	for _, p := range providers {
		h.mux.Handle("POST /hooks/"+p.name, h.receive(p))
	}
	return h, nil
}

// LoadSecret reads a webhook secret from path; surrounding white space
// (such as a trailing newline) is not part of it.
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading webhook secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("reading webhook secret %s: file is empty", path)
	}
	return []byte(s), nil
}

// ServeHTTP serves POST /hooks/{github,gitlab,generic}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) { h.mux.ServeHTTP(w, req) }

// provider describes how one kind of sender authenticates and names its
// deliveries.
type provider struct {
	name string
	// authentic reports whether req with body carries the secret.
	authentic func(secret []byte, req *http.Request, body []byte) bool
	// deliveryHeader names the delivery id header.
	deliveryHeader string
	// ping reports whether req is a ping, answered without a trigger.
	ping func(req *http.Request) bool
}

var providers = []provider{
	{
		name:           "github",
		authentic:      hmacHeader("X-Hub-Signature-256"),
		deliveryHeader: "X-GitHub-Delivery",
		ping:           func(req *http.Request) bool { return req.Header.Get("X-GitHub-Event") == "ping" },
	},
	{
		name: "gitlab",
		authentic: func(secret []byte, req *http.Request, _ []byte) bool {
			got := req.Header.Get("X-Gitlab-Token")
			return got != "" && subtle.ConstantTimeCompare([]byte(got), secret) == 1
		},
		deliveryHeader: "X-Gitlab-Event-UUID",
	},
	{
		name:           "generic",
		authentic:      hmacHeader("X-Signature-256"),
		deliveryHeader: "X-Delivery-Id",
	},
}

// hmacHeader checks header "sha256=<hex>" against the HMAC-SHA256 of the
// body keyed with the secret, in constant time.
func hmacHeader(header string) func([]byte, *http.Request, []byte) bool {
	return func(secret []byte, req *http.Request, body []byte) bool {
		sig, ok := strings.CutPrefix(req.Header.Get(header), "sha256=")
		if !ok {
			return false
		}
		got, err := hex.DecodeString(sig)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		return hmac.Equal(got, mac.Sum(nil))
	}
}

// receive handles one provider's deliveries: size limit, authentication,
// replay, ping, branch, then the trigger.
func (h *Handler) receive(p provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		log := h.log.With("provider", p.name)
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, h.maxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				log.Warn("webhook body too large", "limit_bytes", h.maxBody)
				reply(w, http.StatusRequestEntityTooLarge, "error", fmt.Sprintf("body larger than %d bytes", h.maxBody))
				return
			}
			reply(w, http.StatusBadRequest, "error", "reading body: "+err.Error())
			return
		}
		if !p.authentic(h.secret, req, body) {
			log.Warn("webhook refused: missing or invalid signature", "remote_addr", req.RemoteAddr)
			reply(w, http.StatusUnauthorized, "error", "missing or invalid signature")
			return
		}
		id := req.Header.Get(p.deliveryHeader)
		if id != "" && h.seen.seenBefore(p.name+"/"+id) {
			log.Info("webhook replay ignored", "delivery_id", id)
			reply(w, http.StatusAccepted, "status", "duplicate delivery "+id+" ignored")
			return
		}
		if p.ping != nil && p.ping(req) {
			reply(w, http.StatusOK, "status", "pong")
			return
		}
		if h.branch != "" {
			// A payload that does not parse or names no branch
			// triggers: when in doubt, fetch.
			if push, err := ParsePush(body); err == nil {
				if b, ok := push.Branch(); ok && b != h.branch {
					log.Debug("webhook for another branch ignored", "branch", b, "following", h.branch)
					reply(w, http.StatusAccepted, "status", fmt.Sprintf("push to branch %s ignored: following %s", b, h.branch))
					return
				}
			}
		}
		h.trigger.Trigger()
		log.Info("webhook triggered a fetch", "delivery_id", id)
		reply(w, http.StatusAccepted, "status", "fetch requested")
	})
}

// reply writes {key: msg} as JSON with code.
func reply(w http.ResponseWriter, code int, key, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{key: msg})
}

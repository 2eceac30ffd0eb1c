package xdsauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Audience is the audience of the projected ServiceAccount tokens proxies
// join with in Kubernetes mode (package tokenreview authenticates them).
const Audience = "gitmesh"

// ErrUnknownToken is returned by an Authenticator for a token it does not
// recognise, so that the next one may try.
var ErrUnknownToken = errors.New("unknown token")

// Authenticator authenticates the bearer token of a CreateCertificate
// call. Given what the caller declared, it returns the Binding to issue,
// or an error: ErrUnknownToken (wrapped) when the token is not of its
// kind, anything else to refuse.
type Authenticator interface {
	Authenticate(ctx context.Context, token string, declared Binding) (Binding, error)
}

// JoinToken authenticates callers that present the fleet's join token.
// They are trusted to declare who they are: the node id, namespace,
// service account and labels they declare become bound to their
// certificate. A pod is bound only by a ServiceAccount token (TokenReview),
// so a declared pod name is dropped.
type JoinToken struct{ token []byte }

// NewJoinToken returns a JoinToken authenticator for token.
func NewJoinToken(token string) (*JoinToken, error) {
	if len(token) < 16 {
		return nil, errors.New("join token: shorter than 16 characters")
	}
	return &JoinToken{token: []byte(token)}, nil
}

var _ Authenticator = (*JoinToken)(nil)

// Authenticate compares token with the join token in constant time.
func (j *JoinToken) Authenticate(_ context.Context, token string, declared Binding) (Binding, error) {
	if subtle.ConstantTimeCompare([]byte(token), j.token) != 1 {
		return Binding{}, fmt.Errorf("join token: %w", ErrUnknownToken)
	}
	declared.Pod = ""
	return declared, nil
}

// LoadOrCreateJoinToken reads the join token from path, or, when the file
// does not exist, writes a new random one there with mode 0600.
func LoadOrCreateJoinToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("reading join token %s: file is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading join token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating join token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("writing join token: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing join token: %w", err)
	}
	return tok, nil
}

// ReadTokenFile reads a bearer token file (a join token, or a projected
// ServiceAccount token, which the kubelet rewrites: read it before each
// use).
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("reading token %s: file is empty", path)
	}
	return tok, nil
}

// bearer returns the token of the call's "authorization: Bearer" metadata.
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok && tok != "" {
			return strings.TrimSpace(tok), true
		}
	}
	return "", false
}

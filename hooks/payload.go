package hooks

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Push is what the receiver reads from a push payload.
type Push struct {
	// Ref is the pushed ref, e.g. "refs/heads/main" or "refs/tags/v1.0.0";
	// empty when the payload names none.
	Ref string `json:"ref"`
}

// Branch returns the branch Ref names and true, or "" and false when Ref
// is not a branch (a tag, another ref, or none).
func (p Push) Branch() (string, bool) {
	b, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok || b == "" {
		return "", false
	}
	return b, true
}

// ParsePush reads the ref of a GitHub, GitLab or generic push payload: a
// JSON object with a string "ref" field, as both GitHub and GitLab send.
// Other fields are ignored. An empty body is a push without a ref.
func ParsePush(body []byte) (Push, error) {
	var p Push
	if len(strings.TrimSpace(string(body))) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Push{}, fmt.Errorf("parsing push payload: %w", err)
	}
	return p, nil
}

package reconciler

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gitmesh/gitmesh/sources"
)

func TestReasonFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "unverified commit", err: fmt.Errorf("fetching: %w", sources.ErrUnverified), want: ReasonVerificationFailed},
		{name: "too large", err: fmt.Errorf("fetching: %w", sources.ErrRepoTooLarge), want: ReasonArtifactTooLarge},
		{name: "other", err: errors.New("connection refused"), want: ReasonFetchFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonFor(tc.err, ReasonFetchFailed); got != tc.want {
				t.Errorf("reasonFor(%v): got %q; want %q", tc.err, got, tc.want)
			}
		})
	}
}

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// TestSignedCommits: with --verify-ssh-keys, a signed push rolls out, an
// unsigned one is refused with Ready=False VerificationFailed while the
// last good keeps serving, and the next signed push rolls out again.
func TestSignedCommits(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ssh-keygen is required (Debian: openssh-client): %v", err)
		}
		t.Skipf("ssh-keygen not installed (Debian: openssh-client): %v", err)
	}
	keys := t.TempDir()
	key := filepath.Join(keys, "signer")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}

	v1, v2 := e2etest.Backend(t, "v1"), e2etest.Backend(t, "v2")
	v1Addr, v2Addr := strings.TrimPrefix(v1.URL, "http://"), strings.TrimPrefix(v2.URL, "http://")
	repo := e2etest.NewGitRemote(t)
	signing := func(on bool) {
		repo.Git("-C", repo.Clone, "config", "gpg.format", "ssh")
		repo.Git("-C", repo.Clone, "config", "user.signingkey", key)
		repo.Git("-C", repo.Clone, "config", "commit.gpgsign", map[bool]string{true: "true", false: "false"}[on])
	}
	signing(true)
	good := repo.Push("reviews: all to v1", reviewsPolicy(v1Addr, v2Addr, allV1))

	xdsAddr := testnet.FreeAddr(t)
	cfg := controllerConfig(t, repo.URL, t.TempDir(), 200*time.Millisecond)
	cfg.XDSAddr, cfg.VerifySSHKeysFile = xdsAddr, key+".pub"
	m := startControllerConfig(t, cfg)
	out, _ := startProxy(t, xdsAddr, "client-1")
	e2etest.Eventually(t, 20*time.Second, "signed revision applied", func() string { return synced(m, good, 1) })

	signing(false)
	unsigned := repo.Push("reviews: all to v2, unsigned", reviewsPolicy(v1Addr, v2Addr, allV2))
	e2etest.Eventually(t, 20*time.Second, "unsigned head refused", func() string {
		c := m.status().Ready()
		if c == nil || c.Reason != "VerificationFailed" {
			return "ready not VerificationFailed yet"
		}
		if !strings.Contains(c.Message, unsigned) || !strings.Contains(c.Message, "unsigned") {
			return "message does not name the commit and why: " + c.Message
		}
		return ""
	})
	t.Logf("refused: %s", m.status().Ready().Message)
	if why := synced(m, good, 1); why != "" {
		t.Fatalf("after an unsigned push: %s", why)
	}
	if why := only(e2etest.Split(out, "reviews", 20), "v1"); why != "" {
		t.Fatalf("after an unsigned push: %s", why)
	}

	signing(true)
	signed := repo.Push("reviews: all to v2, signed", reviewsPolicy(v1Addr, v2Addr, allV2))
	e2etest.Eventually(t, 20*time.Second, "signed revision applied", func() string {
		if why := synced(m, signed, 1); why != "" {
			return why
		}
		return only(e2etest.Split(out, "reviews", 20), "v2")
	})
}

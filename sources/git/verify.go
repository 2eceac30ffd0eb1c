package git

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/gitmesh/gitmesh/sources"
)

// ErrUnverified is wrapped by every *VerificationError: the head commit
// carries no signature from a trusted key, and was refused. It is
// sources.ErrUnverified, so callers need not import this package.
var ErrUnverified = sources.ErrUnverified

// VerificationError says why a commit was refused by WithVerify. It
// matches ErrUnverified with errors.Is.
type VerificationError struct {
	// Commit is the refused commit, as 40 hex digits.
	Commit string
	// Reason says why: "unsigned", "signed by an unknown OpenPGP key
	// <fingerprint>", "signed by an unknown ssh key SHA256:...", "bad
	// signature: ...".
	Reason string
}

// Error reads "commit <hex> not verified: <reason>".
func (e *VerificationError) Error() string {
	return fmt.Sprintf("commit %s not verified: %s", e.Commit, e.Reason)
}

// Unwrap returns ErrUnverified.
func (e *VerificationError) Unwrap() error { return ErrUnverified }

// VerifyKeys are the public keys a head commit's signature is checked
// against (Flux's GitRepository spec.verify, mode HEAD). At least one of
// them must be set.
type VerifyKeys struct {
	// PGPKeyRing is an ASCII-armored OpenPGP keyring (as written by
	// `gpg --export --armor`); several armored blocks may follow each other.
	PGPKeyRing []byte
	// SSHAllowedSigners lists ssh public keys one a line, in
	// authorized_keys form ("ssh-ed25519 AAAA... comment") or git's
	// allowed_signers form ("alice@example.com ssh-ed25519 AAAA...").
	// Blank lines and lines starting with # are ignored.
	SSHAllowedSigners []byte
}

// LoadVerifyKeys reads VerifyKeys from files; an empty name leaves that
// kind of key unset.
func LoadVerifyKeys(pgpFile, sshFile string) (VerifyKeys, error) {
	var k VerifyKeys
	var err error
	if pgpFile != "" {
		if k.PGPKeyRing, err = os.ReadFile(pgpFile); err != nil {
			return VerifyKeys{}, fmt.Errorf("reading OpenPGP keyring: %w", err)
		}
	}
	if sshFile != "" {
		if k.SSHAllowedSigners, err = os.ReadFile(sshFile); err != nil {
			return VerifyKeys{}, fmt.Errorf("reading ssh allowed signers: %w", err)
		}
	}
	return k, nil
}

// verifier checks commit signatures against parsed keys.
type verifier struct {
	pgp openpgp.EntityList
	ssh map[string]ssh.PublicKey // by SHA256 fingerprint
}

// WithVerify makes Fetch refuse a head commit that is not signed by one of
// keys, with a *VerificationError (errors.Is ErrUnverified): the work tree
// is not checked out at it and no Artifact is returned. OpenPGP signatures
// are checked against keys.PGPKeyRing, ssh signatures (git's
// gpg.format=ssh, namespace "git") against keys.SSHAllowedSigners. The
// keys are parsed here; an unreadable key is an error from New.
func WithVerify(keys VerifyKeys) Option {
	return func(s *Source) error {
		v, err := newVerifier(keys)
		if err != nil {
			return err
		}
		s.verifier = v
		return nil
	}
}

func newVerifier(keys VerifyKeys) (*verifier, error) {
	v := &verifier{ssh: map[string]ssh.PublicKey{}}
	if len(bytes.TrimSpace(keys.PGPKeyRing)) > 0 {
		rest := keys.PGPKeyRing
		for len(bytes.TrimSpace(rest)) > 0 {
			// ReadArmoredKeyRing reads one armored block; keyring files made
			// by concatenating exports hold several.
			i := bytes.Index(rest[1:], []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
			block := rest
			if i >= 0 {
				block, rest = rest[:i+1], rest[i+1:]
			} else {
				rest = nil
			}
			el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(block))
			if err != nil {
				return nil, fmt.Errorf("parsing OpenPGP keyring: %w", err)
			}
			v.pgp = append(v.pgp, el...)
		}
	}
	for n, line := range strings.Split(string(keys.SSHAllowedSigners), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("parsing ssh allowed signers line %d: %w", n+1, err)
		}
		v.ssh[ssh.FingerprintSHA256(pub)] = pub
	}
	if len(v.pgp) == 0 && len(v.ssh) == 0 {
		return nil, errors.New("verifying commits: no OpenPGP or ssh public key given")
	}
	return v, nil
}

// verify returns nil when c carries one signature by a trusted key, and a
// *VerificationError otherwise.
func (v *verifier) verify(c *object.Commit) error {
	fail := func(format string, args ...any) error {
		return &VerificationError{Commit: c.Hash.String(), Reason: fmt.Sprintf(format, args...)}
	}
	sig := strings.TrimSpace(c.PGPSignature)
	switch {
	case sig == "":
		return fail("unsigned")
	case strings.HasPrefix(sig, sshSigArmorStart):
		payload, err := signedPayload(c)
		if err != nil {
			return err
		}
		if len(v.ssh) == 0 {
			return fail("signed with ssh and no ssh keys are trusted (--verify-ssh-keys)")
		}
		if err := verifySSH(v.ssh, []byte(sig), payload); err != nil {
			return fail("%v", err)
		}
		return nil
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		if len(v.pgp) == 0 {
			return fail("signed with OpenPGP and no OpenPGP keys are trusted (--verify-pgp-keys)")
		}
		return v.verifyPGP(c, sig, fail)
	}
	return fail("unsupported signature format (neither OpenPGP nor ssh)")
}

func (v *verifier) verifyPGP(c *object.Commit, sig string, fail func(string, ...any) error) error {
	if strings.Count(sig, "-----BEGIN PGP SIGNATURE-----") > 1 {
		return fail("more than one signature")
	}
	payload, err := signedPayload(c)
	if err != nil {
		return err
	}
	_, err = openpgp.CheckArmoredDetachedSignature(v.pgp, bytes.NewReader(payload), strings.NewReader(sig), nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fail("signed by an unknown OpenPGP key %s", pgpIssuer(sig))
	}
	return fail("bad OpenPGP signature: %v", err)
}

// signedPayload returns the bytes a commit's signature covers: the commit
// object without its gpgsig header.
func signedPayload(c *object.Commit) ([]byte, error) {
	o := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(o); err != nil {
		return nil, fmt.Errorf("encoding commit %s: %w", c.Hash, err)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("encoding commit %s: %w", c.Hash, err)
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("encoding commit %s: %w", c.Hash, err)
	}
	return b.Bytes(), nil
}

// pgpIssuer names the key an armored OpenPGP signature says it was made
// with: its fingerprint in upper-case hex, or "key id <hex>" when the
// signature carries only the 64-bit id.
func pgpIssuer(sig string) string {
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return "(unreadable signature)"
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return "(unreadable signature)"
	}
	s, ok := p.(*packet.Signature)
	switch {
	case !ok:
		return "(unreadable signature)"
	case len(s.IssuerFingerprint) > 0:
		return strings.ToUpper(hex.EncodeToString(s.IssuerFingerprint))
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("key id %016X", *s.IssuerKeyId)
	}
	return "(no issuer in signature)"
}

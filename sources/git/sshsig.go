package git

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The sshsig format (OpenSSH's PROTOCOL.sshsig), which `git commit -S`
// writes with gpg.format=ssh.
const (
	sshSigArmorStart = "-----BEGIN SSH SIGNATURE-----"
	sshSigArmorEnd   = "-----END SSH SIGNATURE-----"
	sshSigMagic      = "SSHSIG"
	sshSigVersion    = 1
	// sshSigNamespace is the namespace git signs commits and tags in.
	sshSigNamespace = "git"
)

// sshSignature is the blob inside the armor, after magic and version.
type sshSignature struct {
	PublicKey     []byte
	Namespace     string
	Reserved      []byte
	HashAlgorithm string
	Signature     []byte
}

// signedData is what the key actually signs: the message's hash with the
// namespace, after the magic.
type signedData struct {
	Namespace     string
	Reserved      []byte
	HashAlgorithm string
	Hash          []byte
}

// verifySSH checks an armored ssh signature of message against the
// allowed keys (by SHA256 fingerprint). The error says why it failed.
func verifySSH(allowed map[string]ssh.PublicKey, armored, message []byte) error {
	sig, err := parseSSHSignature(armored)
	if err != nil {
		return fmt.Errorf("bad ssh signature: %w", err)
	}
	pub, err := ssh.ParsePublicKey(sig.PublicKey)
	if err != nil {
		return fmt.Errorf("bad ssh signature: parsing its public key: %w", err)
	}
	fp := ssh.FingerprintSHA256(pub)
	trusted, ok := allowed[fp]
	if !ok {
		return fmt.Errorf("signed by an unknown ssh key %s (%s)", fp, pub.Type())
	}
	if sig.Namespace != sshSigNamespace {
		return fmt.Errorf("bad ssh signature: namespace %q, want %q", sig.Namespace, sshSigNamespace)
	}
	var h hash.Hash
	switch sig.HashAlgorithm {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return fmt.Errorf("bad ssh signature: unsupported hash algorithm %q", sig.HashAlgorithm)
	}
	h.Write(message)
	var s ssh.Signature
	if err := ssh.Unmarshal(sig.Signature, &s); err != nil {
		return fmt.Errorf("bad ssh signature: decoding signature: %w", err)
	}
	if s.Format == ssh.KeyAlgoRSA {
		// sshsig forbids SHA-1 RSA signatures.
		return errors.New("bad ssh signature: ssh-rsa (SHA-1) signatures are not accepted")
	}
	data := append([]byte(sshSigMagic), ssh.Marshal(signedData{
		Namespace:     sig.Namespace,
		Reserved:      sig.Reserved,
		HashAlgorithm: sig.HashAlgorithm,
		Hash:          h.Sum(nil),
	})...)
	if err := trusted.Verify(data, &s); err != nil {
		return fmt.Errorf("bad ssh signature by %s: %w", fp, err)
	}
	return nil
}

// parseSSHSignature decodes the armor, magic and version of an sshsig.
func parseSSHSignature(armored []byte) (*sshSignature, error) {
	text := strings.TrimSpace(string(armored))
	if !strings.HasPrefix(text, sshSigArmorStart) || !strings.HasSuffix(text, sshSigArmorEnd) {
		return nil, errors.New("missing armor")
	}
	body := strings.Join(strings.Fields(text[len(sshSigArmorStart):len(text)-len(sshSigArmorEnd)]), "")
	raw, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("decoding base64: %w", err)
	}
	if !bytes.HasPrefix(raw, []byte(sshSigMagic)) || len(raw) < len(sshSigMagic)+4 {
		return nil, errors.New("missing SSHSIG magic")
	}
	raw = raw[len(sshSigMagic):]
	if v := binary.BigEndian.Uint32(raw); v != sshSigVersion {
		return nil, fmt.Errorf("unsupported version %d", v)
	}
	var sig sshSignature
	if err := ssh.Unmarshal(raw[4:], &sig); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return &sig, nil
}

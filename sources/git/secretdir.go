package git

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Files LoadSecretDir reads, named as the keys of a Flux GitRepository
// secret.
const (
	// SecretUsername and SecretPassword hold HTTP basic auth. With an
	// identity, SecretPassword is the key's passphrase instead (as in Flux).
	SecretUsername = "username"
	SecretPassword = "password"
	// SecretBearerToken holds a token sent as "Authorization: Bearer".
	SecretBearerToken = "bearerToken"
	// SecretIdentity holds a PEM or OpenSSH private key for ssh URLs;
	// identity.pub, when present, is ignored.
	SecretIdentity = "identity"
	// SecretKnownHosts holds the known_hosts lines ssh host keys are
	// checked against.
	SecretKnownHosts = "known_hosts"
	// SecretCAFile and SecretCACert hold PEM CA certificates trusted for
	// https; ca.crt wins when both exist, as in Flux.
	SecretCAFile = "caFile"
	SecretCACert = "ca.crt"
)

// maxSecretFile bounds what LoadSecretDir reads from one file.
const maxSecretFile = 1 << 20

// LoadSecretDir reads Git credentials from the files in dir, laid out as a
// Flux GitRepository secret (a Kubernetes secret mounted as a volume has
// this layout): username and password, or bearerToken, for https;
// identity (with password as its passphrase) and known_hosts for ssh;
// caFile or ca.crt for https servers signed by a private CA. Unknown files
// are ignored. A trailing newline is trimmed from username, password and
// bearerToken, so files written with echo work.
//
// Errors name the file, never its content. A dir without any of those
// files, bearerToken with username or password, and an identity that
// does not parse are errors.
func LoadSecretDir(dir string) (Auth, error) {
	from := "--secret-dir " + dir
	fi, err := os.Stat(dir)
	if err != nil {
		return Auth{}, fmt.Errorf("reading %s: %w", from, err)
	}
	if !fi.IsDir() {
		return Auth{}, fmt.Errorf("reading %s: not a directory", from)
	}
	read := func(name string) ([]byte, error) {
		b, err := readSecretFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", name, from, err)
		}
		return b, nil
	}
	files := map[string][]byte{}
	for _, name := range []string{SecretUsername, SecretPassword, SecretBearerToken, SecretIdentity, SecretKnownHosts, SecretCAFile, SecretCACert} {
		b, err := read(name)
		if err != nil {
			return Auth{}, err
		}
		if b != nil {
			files[name] = b
		}
	}
	if len(files) == 0 {
		return Auth{}, fmt.Errorf("reading %s: none of username, password, bearerToken, identity, known_hosts, caFile or ca.crt is there", from)
	}
	text := func(name string) string { return strings.TrimRight(string(files[name]), "\r\n") }

	a := Auth{
		Username:    text(SecretUsername),
		BearerToken: text(SecretBearerToken),
		SSHKey:      files[SecretIdentity],
		KnownHosts:  files[SecretKnownHosts],
		CABundle:    files[SecretCAFile],
		From:        from,
	}
	if b, ok := files[SecretCACert]; ok {
		a.CABundle = b
	}
	if len(a.SSHKey) > 0 {
		a.SSHKeyPassphrase = text(SecretPassword)
	} else {
		a.Password = text(SecretPassword)
	}
	if a.BearerToken != "" && (a.Username != "" || a.Password != "") {
		return Auth{}, fmt.Errorf("reading %s: bearerToken and username/password are both given; keep one", from)
	}
	if len(a.SSHKey) > 0 && a.BearerToken != "" {
		return Auth{}, fmt.Errorf("reading %s: identity and bearerToken are both given; keep one", from)
	}
	if len(a.SSHKey) > 0 {
		// Parse now so a bad key fails at start, not at the first fetch.
		if _, err := (Auth{SSHKey: a.SSHKey, SSHKeyPassphrase: a.SSHKeyPassphrase, InsecureIgnoreHostKey: true}).method(endpoint{url: "ssh://git@localhost/", ssh: true}); err != nil {
			return Auth{}, fmt.Errorf("reading %s from %s: %w", SecretIdentity, from, redact(err, a.secrets()))
		}
	}
	if len(a.KnownHosts) > 0 {
		if _, err := knownHostsCallback(a.KnownHosts); err != nil {
			return Auth{}, fmt.Errorf("reading %s from %s: %w", SecretKnownHosts, from, err)
		}
	}
	return a, nil
}

// LoadKnownHosts reads a known_hosts file (as --ssh-known-hosts names
// it) and checks that it holds at least one host key.
func LoadKnownHosts(path string) ([]byte, error) {
	b, err := readSecretFile(path)
	if err == nil && b == nil {
		err = os.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("reading known hosts %s: %w", path, err)
	}
	if _, err := knownHostsCallback(b); err != nil {
		return nil, fmt.Errorf("reading known hosts %s: %w", path, err)
	}
	return b, nil
}

// readSecretFile returns the content of the regular file at path (links
// followed, as Kubernetes mounts secrets through them), nil when it does
// not exist. It refuses files over maxSecretFile.
func readSecretFile(path string) ([]byte, error) {
	// Stat before opening: opening a named pipe would block.
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > maxSecretFile {
		return nil, fmt.Errorf("larger than %d bytes", maxSecretFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("larger than %d bytes", maxSecretFile)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// unwrapPathError drops the path from an *os.PathError (the caller names
// the file already) and keeps the cause.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

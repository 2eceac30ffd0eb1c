package git

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth holds the credentials a Source uses. Set the fields for the URL's
// transport: Username and Password (or BearerToken) for http(s), SSHKey for
// ssh. Its String method never shows secrets.
type Auth struct {
	// Username and Password are sent as HTTP basic auth. With a token-based
	// provider, Password is the token and Username any non-empty name.
	Username, Password string
	// BearerToken is sent as "Authorization: Bearer <token>"; it is an
	// alternative to Username and Password.
	BearerToken string

	// SSHUser is the ssh user; if empty, the URL's user, else "git".
	SSHUser string
	// SSHKey is a PEM-encoded private key (RSA, ECDSA, Ed25519, OpenSSH).
	SSHKey []byte
	// SSHKeyPassphrase decrypts SSHKey when it is encrypted.
	SSHKeyPassphrase string
	// KnownHosts is known_hosts content the server's host key must match
	// (plain or hashed host entries). Required for ssh unless
	// InsecureIgnoreHostKey is set.
	KnownHosts []byte
	// InsecureIgnoreHostKey skips host key verification. For tests only.
	InsecureIgnoreHostKey bool
	// CABundle is PEM-encoded CA certificates trusted for https, in
	// addition to the system's.
	CABundle []byte
	// From says where the credentials came from, for error messages, e.g.
	// "--secret-dir /etc/gitmesh/git". LoadSecretDir sets it.
	From string
}

// String describes which credentials are set, without their values.
func (a Auth) String() string {
	var parts []string
	if a.Username != "" {
		parts = append(parts, "username="+a.Username)
	}
	if a.Password != "" {
		parts = append(parts, "password=<redacted>")
	}
	if a.BearerToken != "" {
		parts = append(parts, "bearer_token=<redacted>")
	}
	if len(a.SSHKey) > 0 {
		parts = append(parts, "ssh_key=<redacted>")
	}
	if len(a.SSHKeyPassphrase) > 0 {
		parts = append(parts, "ssh_key_passphrase=<redacted>")
	}
	if len(a.KnownHosts) > 0 {
		parts = append(parts, "known_hosts")
	}
	if len(a.CABundle) > 0 {
		parts = append(parts, "ca_bundle")
	}
	return "Auth{" + strings.Join(parts, " ") + "}"
}

// GoString is String, so %#v does not show secrets either.
func (a Auth) GoString() string { return a.String() }

func (a Auth) isZero() bool {
	return a.Username == "" && a.Password == "" && a.BearerToken == "" && len(a.SSHKey) == 0
}

// anonymousAccess is what describe says when no credential is used;
// fetchError tells the user to give one.
const anonymousAccess = "anonymous access"

// describe names the credential used for ep, for error messages: which
// kind and where it came from, never its value.
func (a Auth) describe(ep endpoint) string {
	from := ""
	if a.From != "" {
		from = " from " + a.From
	}
	switch {
	case ep.http && a.BearerToken != "":
		return "bearer token (bearerToken" + from + ")"
	case ep.http && (a.Username != "" || a.Password != ""):
		return "basic auth (username/password" + from + ")"
	case ep.ssh && len(a.SSHKey) > 0:
		return "ssh key (identity" + from + ")"
	case ep.ssh:
		return "ssh agent"
	}
	return anonymousAccess
}

// secrets lists the values that must never be shown.
func (a Auth) secrets() []string {
	var s []string
	for _, v := range []string{a.Password, a.BearerToken, a.SSHKeyPassphrase} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}

// method returns the go-git auth method for ep (nil for none).
func (a Auth) method(ep endpoint) (transport.AuthMethod, error) {
	switch {
	case ep.http:
		if len(a.SSHKey) > 0 {
			return nil, errors.New("ssh key (identity) given for an http(s) url")
		}
		if a.BearerToken != "" {
			if a.Username != "" || a.Password != "" {
				return nil, errors.New("both bearer token and basic auth given")
			}
			return &githttp.TokenAuth{Token: a.BearerToken}, nil
		}
		if a.Username != "" || a.Password != "" {
			user := a.Username
			if user == "" {
				user = "git"
			}
			return &githttp.BasicAuth{Username: user, Password: a.Password}, nil
		}
		return nil, nil
	case ep.ssh:
		if a.Password != "" || a.BearerToken != "" {
			return nil, errors.New("password or bearer token given for an ssh url; use an ssh key")
		}
		if len(a.SSHKey) == 0 && len(a.KnownHosts) == 0 {
			// go-git's default: the ssh agent, and ~/.ssh/known_hosts.
			return nil, nil
		}
		user := a.SSHUser
		if user == "" {
			user = sshUser(ep.url)
		}
		var cb ssh.HostKeyCallback
		switch {
		case a.InsecureIgnoreHostKey:
			cb = ssh.InsecureIgnoreHostKey() //nolint:gosec // opted in explicitly
		case len(a.KnownHosts) > 0:
			var err error
			if cb, err = knownHostsCallback(a.KnownHosts); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("ssh auth needs known hosts (known_hosts or --ssh-known-hosts)")
		}
		if len(a.SSHKey) == 0 {
			agent, err := gitssh.NewSSHAgentAuth(user)
			if err != nil {
				return nil, fmt.Errorf("using the ssh agent (no identity given): %w", err)
			}
			agent.HostKeyCallback = cb
			return agent, nil
		}
		pk, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			// Parse errors of a key never quote the key, but be safe.
			return nil, fmt.Errorf("parsing ssh key (identity): %w", errors.New(strings.TrimPrefix(err.Error(), "ssh: ")))
		}
		pk.HostKeyCallback = cb
		return pk, nil
	default:
		if !a.isZero() {
			return nil, errors.New("credentials given for a url that takes none")
		}
		return nil, nil
	}
}

// sshUser returns the user of an ssh or scp-like URL, defaulting to "git".
func sshUser(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if at := strings.Index(u, "@"); at > 0 && !strings.ContainsAny(u[:at], "/:") {
		return u[:at]
	}
	return "git"
}

// knownHost is one parsed known_hosts line.
type knownHost struct {
	hosts []string
	key   ssh.PublicKey
}

// knownHostsCallback returns a host key callback accepting only the keys
// listed for the host in data.
func knownHostsCallback(data []byte) (ssh.HostKeyCallback, error) {
	var entries []knownHost
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		marker, hosts, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			return nil, fmt.Errorf("parsing known hosts: %w", err)
		}
		rest = next
		if marker == "" {
			entries = append(entries, knownHost{hosts: hosts, key: key})
		}
	}
	if len(entries) == 0 {
		return nil, errors.New("parsing known hosts: no host keys")
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		names := []string{knownhosts.Normalize(hostname)}
		if remote != nil {
			names = append(names, knownhosts.Normalize(remote.String()))
		}
		for _, e := range entries {
			if !bytes.Equal(e.key.Marshal(), key.Marshal()) {
				continue
			}
			for _, h := range e.hosts {
				for _, n := range names {
					if hostMatches(h, n) {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("%w: the key %s offered by %s is not in known_hosts", ErrHostKeyUnknown, ssh.FingerprintSHA256(key), hostname)
	}, nil
}

// hostMatches reports whether a known_hosts host entry (plain or hashed
// "|1|salt|hash") names host.
func hostMatches(entry, host string) bool {
	if !strings.HasPrefix(entry, "|1|") {
		return entry == host
	}
	parts := strings.Split(entry[3:], "|")
	if len(parts) != 2 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[0])
	sum, err2 := base64.StdEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(host))
	return hmac.Equal(m.Sum(nil), sum)
}

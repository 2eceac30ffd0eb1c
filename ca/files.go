package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names of a root kept in a directory (the controller's
// <state-dir>/ca).
const (
	CertFile    = "root-cert.pem"
	KeyFile     = "root-key.pem"
	TrustedFile = "trusted-roots.pem"
)

// ReadFiles reads Material from a certificate and a key file and, when
// trustedFile is not "", the earlier roots still trusted.
func ReadFiles(certFile, keyFile, trustedFile string) (Material, error) {
	var m Material
	var err error
	if m.CertPEM, err = os.ReadFile(certFile); err != nil {
		return Material{}, fmt.Errorf("reading CA certificate: %w", err)
	}
	if m.KeyPEM, err = os.ReadFile(keyFile); err != nil {
		return Material{}, fmt.Errorf("reading CA key: %w", err)
	}
	if trustedFile != "" {
		if m.TrustedPEM, err = os.ReadFile(trustedFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Material{}, fmt.Errorf("reading trusted roots: %w", err)
		}
	}
	return m, nil
}

// LoadDir reads the root kept in dir, or generates one for trustDomain
// and writes it there (the key with mode 0600) when dir holds none. It
// reports whether it generated the root.
func LoadDir(dir, trustDomain string, now time.Time) (Material, bool, error) {
	m, err := ReadFiles(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, TrustedFile))
	if err == nil {
		return m, false, nil
	}
	if _, statErr := os.Stat(filepath.Join(dir, CertFile)); !errors.Is(statErr, fs.ErrNotExist) {
		return Material{}, false, err
	}
	if m, err = NewRoot(trustDomain, 0, now); err != nil {
		return Material{}, false, err
	}
	if err := WriteDir(dir, m); err != nil {
		return Material{}, false, err
	}
	return m, true, nil
}

// WriteDir writes m into dir, each file replaced atomically (written
// beside it and renamed), the key with mode 0600.
func WriteDir(dir string, m Material) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating CA directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, m.KeyPEM, 0o600}, {TrustedFile, m.TrustedPEM, 0o644}, {CertFile, m.CertPEM, 0o644}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

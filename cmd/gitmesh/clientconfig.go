package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// clientConfig is the CLI's client configuration, as kubeconfig is
// kubectl's: which controller the client commands talk to and with which
// admin token. `gitmesh login` and `gitmesh up` write it; YAML or JSON.
//
//	currentContext: demo
//	contexts:
//	- name: demo
//	  controller: http://127.0.0.1:15000
//	  tokenFile: /home/me/gitmesh-demo/state/admin-token
//
// A file without contexts may set controller and tokenFile at the top.
type clientConfig struct {
	// Controller and TokenFile apply when no context is current.
	Controller string `json:"controller,omitempty"`
	TokenFile  string `json:"tokenFile,omitempty"`
	// CurrentContext names the context in use.
	CurrentContext string `json:"currentContext,omitempty"`
	// Contexts are named controllers.
	Contexts []clientContext `json:"contexts,omitempty"`
}

// clientContext is one controller the CLI knows.
type clientContext struct {
	// Name names it in currentContext and `gitmesh login --context`.
	Name string `json:"name"`
	// Controller is the admin API's base URL.
	Controller string `json:"controller"`
	// TokenFile holds the admin API's bearer token (absolute path).
	TokenFile string `json:"tokenFile,omitempty"`
}

// clientConfigPath is $XDG_CONFIG_HOME/gitmesh/config, or
// ~/.config/gitmesh/config when XDG_CONFIG_HOME is unset or relative (as
// the XDG base directory specification says).
func clientConfigPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "gitmesh", "config"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the client configuration: %w", err)
	}
	return filepath.Join(home, ".config", "gitmesh", "config"), nil
}

// openClientConfig finds the client configuration and reads it.
func openClientConfig() (string, *clientConfig, error) {
	path, err := clientConfigPath()
	if err != nil {
		return "", nil, err
	}
	cfg, err := loadClientConfig(path)
	return path, cfg, err
}

// loadClientConfig reads the file at path; a missing file is an empty
// configuration.
func loadClientConfig(path string) (*clientConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &clientConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading client configuration: %w", err)
	}
	var c clientConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("reading client configuration %s: %w", path, err)
	}
	return &c, nil
}

// current returns the context in use: the current one, or the top-level
// controller and token file (with an empty name); ok is false when the
// file names no controller.
func (c *clientConfig) current() (ctx clientContext, ok bool, err error) {
	if c.CurrentContext != "" {
		for _, x := range c.Contexts {
			if x.Name == c.CurrentContext {
				return x, true, nil
			}
		}
		return clientContext{}, false, fmt.Errorf("current context %q is not among the contexts", c.CurrentContext)
	}
	if c.Controller == "" {
		return clientContext{}, false, nil
	}
	return clientContext{Controller: c.Controller, TokenFile: c.TokenFile}, true, nil
}

// set adds or replaces the context x and makes it current.
func (c *clientConfig) set(x clientContext) {
	c.CurrentContext = x.Name
	for i := range c.Contexts {
		if c.Contexts[i].Name == x.Name {
			c.Contexts[i] = x
			return
		}
	}
	c.Contexts = append(c.Contexts, x)
}

// remove drops the context named name (the top-level one when name is
// empty) and reports whether there was one. When it was current, no
// context is current afterwards.
func (c *clientConfig) remove(name string) bool {
	if name == "" {
		had := c.Controller != ""
		c.Controller, c.TokenFile = "", ""
		return had
	}
	for i, x := range c.Contexts {
		if x.Name == name {
			c.Contexts = append(c.Contexts[:i], c.Contexts[i+1:]...)
			if c.CurrentContext == name {
				c.CurrentContext = ""
			}
			return true
		}
	}
	return false
}

// save writes c to path (mode 0600, directory 0700), replacing the file
// atomically.
func (c *clientConfig) save(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding client configuration: %w", err)
	}
	b = append([]byte("# gitmesh client configuration, written by `gitmesh login` and `gitmesh up`.\n"), b...)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing client configuration: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return fmt.Errorf("writing client configuration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing client configuration: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing client configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing client configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing client configuration: %w", err)
	}
	return nil
}

// sameURL reports whether two controller URLs are the same but for a
// trailing slash.
func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

package main

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/admin"
)

func newLoginCmd() *cobra.Command {
	var (
		controller, tokenFile, name string
		noVerify                    bool
	)
	cmd := &cobra.Command{
		Use:   "login --controller URL [--token-file FILE] [--context NAME]",
		Short: "Point the client commands at a controller (written to the client configuration)",
		Long: `Save a controller's admin API URL and the file holding its admin token as a
named context of the client configuration, and make it current, as
'kubectl config' or 'argocd login' do. Every client command (status,
history, pause, resume, promote, abort, rollback, ca, diff --live) then uses
it from any directory. 'gitmesh up' does this for its demo (context "demo").

The configuration is $XDG_CONFIG_HOME/gitmesh/config (default
~/.config/gitmesh/config), YAML or JSON, mode 0600. It holds the token
file's path, not the token. Precedence: --controller/--token-file, then
GITMESH_CONTROLLER/GITMESH_TOKEN, then the current context, then
http://` + defaultAdminAddr + `.

With --context alone, the named context becomes current. Unless
--no-verify, login checks that the controller answers and accepts the token.

Exit codes: 0 saved, 2 not saved (see the message).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, cfg, err := openClientConfig()
			if err != nil {
				return &exitError{2, err}
			}
			if controller == "" {
				if !cmd.Flags().Changed("context") {
					return &exitError{2, errors.New("--controller is required (or --context NAME to switch to a saved context)")}
				}
				for _, x := range cfg.Contexts {
					if x.Name == name {
						cfg.CurrentContext = name
						if err := cfg.save(path); err != nil {
							return &exitError{2, err}
						}
						fmt.Fprintf(cmd.OutOrStdout(), "switched to context %q (%s) in %s\n", name, x.Controller, path)
						return nil
					}
				}
				return &exitError{2, fmt.Errorf("no context %q in %s: give --controller to create it", name, path)}
			}
			if !strings.Contains(controller, "://") {
				controller = "http://" + controller
			}
			x := clientContext{Name: name, Controller: strings.TrimRight(controller, "/")}
			if tokenFile != "" {
				if x.TokenFile, err = filepath.Abs(tokenFile); err != nil {
					return &exitError{2, err}
				}
			}
			if !noVerify {
				if err := verifyLogin(cmd, x); err != nil {
					return &exitError{2, fmt.Errorf("%w (--no-verify saves it anyway)", err)}
				}
			}
			cfg.set(x)
			if err := cfg.save(path); err != nil {
				return &exitError{2, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q (%s) saved in %s and current\n", name, x.Controller, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&controller, "controller", "", "controller admin API URL, e.g. http://127.0.0.1:15000")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the admin token (the controller writes <state-dir>/admin-token); saved as an absolute path")
	cmd.Flags().StringVar(&name, "context", "default", "name of the context")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "save without checking that the controller answers and accepts the token")
	return cmd
}

// verifyLogin checks that x's controller answers and, with a token file,
// accepts its token.
func verifyLogin(cmd *cobra.Command, x clientContext) error {
	c := &adminClient{base: x.Controller, tokenFile: x.TokenFile, http: &http.Client{Timeout: 10 * time.Second}}
	var st admin.Status
	if err := c.get(cmd.Context(), "/api/v1/status", &st); err != nil {
		return err
	}
	if x.TokenFile == "" {
		return nil
	}
	// A malformed request is refused after the token check and before the
	// reconciler sees it: 400 means the token was accepted.
	err := c.post(cmd.Context(), "/api/v1/rollout", json400{}, nil)
	var ae *apiError
	if err == nil || (errors.As(err, &ae) && ae.code == http.StatusBadRequest) {
		return nil
	}
	return err
}

// json400 encodes as a JSON value the admin API cannot decode into a
// request, so the check has no effect.
type json400 struct{}

// MarshalJSON writes a string where an object is expected.
func (json400) MarshalJSON() ([]byte, error) { return []byte(`"token check"`), nil }

func newLogoutCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "logout [--context NAME]",
		Short: "Forget a controller saved by login (default: the current context)",
		Long: `Remove a context from the client configuration: the current one, or the one
--context names. The token file itself is left alone.

Exit codes: 0 removed, 1 nothing to remove, 2 could not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, cfg, err := openClientConfig()
			if err != nil {
				return &exitError{2, err}
			}
			if name == "" {
				name = cfg.CurrentContext
			}
			if !cfg.remove(name) {
				fmt.Fprintf(cmd.OutOrStdout(), "nothing to log out of in %s\n", path)
				return &exitError{code: 1}
			}
			if err := cfg.save(path); err != nil {
				return &exitError{2, err}
			}
			what := "the controller"
			if name != "" {
				what = fmt.Sprintf("context %q", name)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s\n", what, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "context", "", "context to remove (default: the current one)")
	return cmd
}

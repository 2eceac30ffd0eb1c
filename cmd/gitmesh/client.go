package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// adminClient talks to the controller's admin API.
type adminClient struct {
	base      string
	tokenFile string
	http      *http.Client
}

// clientFlags adds --controller and --token-file. Mutating commands need
// the token; reads send it when there is one (a controller started with
// --admin-auth all requires it for reads too).
func clientFlags(cmd *cobra.Command, mutating bool) *adminClient {
	c := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	controllerFlag(cmd, &c.base)
	usage := "file holding the admin API bearer token (default $GITMESH_TOKEN, then ./gitmesh-demo/state/admin-token when it exists)"
	if !mutating {
		usage += "; needed when the controller runs with --admin-auth all"
	}
	cmd.Flags().StringVar(&c.tokenFile, "token-file", "", usage)
	return c
}

// controllerFlag adds --controller (default $GITMESH_CONTROLLER).
func controllerFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "controller", envOr("GITMESH_CONTROLLER", "http://"+defaultAdminAddr), "controller admin API URL (env GITMESH_CONTROLLER)")
}

// token finds the bearer token: --token-file, $GITMESH_TOKEN, or the
// token `gitmesh up` generated in ./gitmesh-demo.
func (c *adminClient) token() (string, error) {
	path := c.tokenFile
	if path == "" {
		if t := os.Getenv("GITMESH_TOKEN"); t != "" {
			return t, nil
		}
		path = "gitmesh-demo/state/admin-token"
		if _, err := os.Stat(path); err != nil {
			return "", errors.New("no admin token: pass --token-file or set GITMESH_TOKEN (the controller writes one to <state-dir>/admin-token)")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// get decodes GET path into v, with the bearer token when one is found.
func (c *adminClient) get(ctx context.Context, path string, v any) error {
	tok, err := c.token()
	if err != nil && c.tokenFile != "" {
		return err
	}
	return c.do(ctx, http.MethodGet, path, nil, tok, v)
}

// post sends body as JSON to path with the bearer token and decodes the answer into v.
func (c *adminClient) post(ctx context.Context, path string, body, v any) error {
	tok, err := c.token()
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, body, tok, v)
}

func (c *adminClient) do(ctx context.Context, method, path string, body any, token string, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	url := strings.TrimRight(c.base, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("calling controller: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling controller at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("reading controller answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error, Message string
		}
		_ = json.Unmarshal(b, &e)
		msg := e.Error + e.Message
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		return &apiError{code: resp.StatusCode, msg: msg}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding controller answer: %w", err)
	}
	return nil
}

// apiError is a non-2xx answer of the admin API.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("controller answered %d: %s", e.code, e.msg) }

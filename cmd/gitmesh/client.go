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

// legacyTokenFile is where `gitmesh up` keeps the admin token when run in
// the current directory; used when nothing else names a token.
const legacyTokenFile = "gitmesh-demo/state/admin-token"

// adminClient talks to the controller's admin API. base and tokenFile are
// the flags; the controller and token in use are resolved on each call:
// flag > environment (GITMESH_CONTROLLER, GITMESH_TOKEN) > the client
// configuration's current context > defaults.
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
	usage := "file holding the admin API bearer token (default $GITMESH_TOKEN, then the current context of the client configuration (gitmesh login), then ./" + legacyTokenFile + " when it exists)"
	if !mutating {
		usage += "; needed when the controller runs with --admin-auth all"
	}
	cmd.Flags().StringVar(&c.tokenFile, "token-file", "", usage)
	return c
}

// controllerFlag adds --controller, resolved when used.
func controllerFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "controller", "", "controller admin API URL (default $GITMESH_CONTROLLER, then the current context of the client configuration (gitmesh login), then http://"+defaultAdminAddr+")")
}

// target is the controller a call goes to and the token it sends, with
// where each came from (for error messages).
type target struct {
	url, urlFrom string
	// token is "" when none was found; tokenFrom names its source and
	// tokenErr says why none could be read from a named source.
	token, tokenFrom string
	tokenErr         error
}

// resolve finds the controller and token in use.
func (c *adminClient) resolve() (*target, error) {
	t := &target{}
	var ctx clientContext
	var ctxFrom string
	if c.base == "" || (c.tokenFile == "" && os.Getenv("GITMESH_TOKEN") == "") {
		path, cfg, err := openClientConfig()
		if err != nil {
			return nil, err
		}
		x, ok, err := cfg.current()
		if err != nil {
			return nil, fmt.Errorf("%s: %w (fix it with `gitmesh login --context NAME`)", path, err)
		}
		if ok {
			ctx, ctxFrom = x, path
			if x.Name != "" {
				ctxFrom = fmt.Sprintf("context %q of %s", x.Name, path)
			}
		}
	}
	switch {
	case c.base != "":
		t.url, t.urlFrom = c.base, "--controller"
	case os.Getenv("GITMESH_CONTROLLER") != "":
		t.url, t.urlFrom = os.Getenv("GITMESH_CONTROLLER"), "GITMESH_CONTROLLER"
	case ctx.Controller != "":
		t.url, t.urlFrom = ctx.Controller, ctxFrom
	default:
		t.url, t.urlFrom = "http://"+defaultAdminAddr, "the default"
	}
	readFile := func(path, from string) {
		t.tokenFrom = from
		b, err := os.ReadFile(path)
		if err != nil {
			t.tokenErr = fmt.Errorf("reading admin token (%s): %w", from, err)
			return
		}
		t.token = strings.TrimSpace(string(b))
	}
	switch {
	case c.tokenFile != "":
		readFile(c.tokenFile, "--token-file "+c.tokenFile)
	case os.Getenv("GITMESH_TOKEN") != "":
		t.token, t.tokenFrom = os.Getenv("GITMESH_TOKEN"), "GITMESH_TOKEN"
	case ctx.TokenFile != "" && sameURL(ctx.Controller, t.url):
		// The context's token goes only to the context's controller.
		readFile(ctx.TokenFile, ctx.TokenFile+" ("+ctxFrom+")")
	default:
		if _, err := os.Stat(legacyTokenFile); err == nil {
			readFile(legacyTokenFile, "./"+legacyTokenFile)
		}
	}
	return t, nil
}

// get decodes GET path into v, with the bearer token when one is found.
func (c *adminClient) get(ctx context.Context, path string, v any) error {
	t, err := c.resolve()
	if err != nil {
		return err
	}
	if t.tokenErr != nil && c.tokenFile != "" {
		return t.tokenErr
	}
	return c.do(ctx, t, http.MethodGet, path, nil, v)
}

// post sends body as JSON to path with the bearer token and decodes the answer into v.
func (c *adminClient) post(ctx context.Context, path string, body, v any) error {
	t, err := c.resolve()
	if err != nil {
		return err
	}
	if t.tokenErr != nil {
		return t.tokenErr
	}
	if t.token == "" {
		return fmt.Errorf("no admin token for %s: pass --token-file, set GITMESH_TOKEN, or run `gitmesh login --controller %s --token-file FILE` (the controller writes its token to <state-dir>/admin-token)", t.url, t.url)
	}
	return c.do(ctx, t, http.MethodPost, path, body, v)
}

func (c *adminClient) do(ctx context.Context, t *target, method, path string, body any, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	url := strings.TrimRight(t.url, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("calling controller at %s (from %s): %w", t.url, t.urlFrom, err)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("calling controller at %s: %w", t.url, ctx.Err())
		}
		return &unreachableError{url: t.url, from: t.urlFrom, err: err}
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
		ae := &apiError{code: resp.StatusCode, msg: msg}
		if resp.StatusCode == http.StatusUnauthorized {
			return &unauthorizedError{t: t, err: ae}
		}
		return ae
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

// unreachableError is a controller that did not answer at all.
type unreachableError struct {
	url, from string
	err       error
}

func (e *unreachableError) Error() string {
	cause := errors.Unwrap(e.err) // the *url.Error's cause, without method and URL
	if cause == nil {
		cause = e.err
	}
	return fmt.Sprintf("controller at %s (from %s) is not answering: start it with `gitmesh up`, or point at one with `gitmesh login --controller URL` (%v)",
		e.url, e.from, cause)
}

func (e *unreachableError) Unwrap() error { return e.err }

// unauthorizedError is a 401: which token was sent, from where, and how to
// fix it.
type unauthorizedError struct {
	t   *target
	err *apiError
}

func (e *unauthorizedError) Error() string {
	fix := fmt.Sprintf("use the token that controller wrote to <state-dir>/admin-token: `gitmesh login --controller %s --token-file FILE`, --token-file or GITMESH_TOKEN", e.t.url)
	if e.t.token == "" {
		return fmt.Sprintf("controller at %s answered 401: it needs the admin token and none was found; %s", e.t.url, fix)
	}
	return fmt.Sprintf("controller at %s answered 401 to the admin token from %s (%s): %s", e.t.url, e.t.tokenFrom, e.err.msg, fix)
}

func (e *unauthorizedError) Unwrap() error { return e.err }

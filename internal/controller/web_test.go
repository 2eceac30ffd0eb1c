package controller

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestWebViewAuth: the page and its assets are served to anyone; its API
// reads (the event stream, the graph) need the admin token with
// --admin-auth all, and not with writes.
func TestWebViewAuth(t *testing.T) {
	tests := []struct {
		mode, path string
		token      bool
		want       int
	}{
		{AdminAuthAll, "/", false, http.StatusOK},
		{AdminAuthAll, "/ui/app.js", false, http.StatusOK},
		{AdminAuthAll, "/api/v1/events", false, http.StatusUnauthorized},
		{AdminAuthAll, "/api/v1/graph", false, http.StatusUnauthorized},
		{AdminAuthAll, "/api/v1/status", false, http.StatusUnauthorized},
		{AdminAuthAll, "/api/v1/events", true, http.StatusOK},
		{AdminAuthAll, "/api/v1/graph", true, http.StatusOK},
		{AdminAuthWrites, "/", false, http.StatusOK},
		{AdminAuthWrites, "/api/v1/events", false, http.StatusOK},
		{AdminAuthWrites, "/api/v1/graph", false, http.StatusOK},
	}
	for _, mode := range []string{AdminAuthAll, AdminAuthWrites} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			// The repository is an empty directory: fetches fail at once,
			// without a network.
			c, err := Start(ctx, Config{RepoURL: t.TempDir(), StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", AdminAuth: mode})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			defer func() { cancel(); _ = c.Wait() }()
			for _, tt := range tests {
				if tt.mode != mode {
					continue
				}
				name := tt.path
				if tt.token {
					name += " with token"
				}
				t.Run(name, func(t *testing.T) {
					rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
					defer rcancel()
					req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+c.AdminAddr+tt.path, nil)
					if tt.token {
						req.Header.Set("Authorization", "Bearer "+c.Token)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close() // an event stream is left open: closing ends it
					if resp.StatusCode != tt.want {
						t.Errorf("GET %s: %d; want %d", tt.path, resp.StatusCode, tt.want)
					}
				})
			}
		})
	}
}

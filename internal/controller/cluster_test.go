package controller

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/leader"
)

// TestFollowerAdminHandler: a follower is Ready ("standby") once synced,
// and refuses every admin API call; the rest reaches the next handler.
func TestFollowerAdminHandler(t *testing.T) {
	// The elector never campaigns here, so its client is never called.
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	el, err := leader.New(leader.Config{Client: cs, Namespace: "gitmesh-system", Name: "gitmesh", Identity: "follower"})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "next") })
	tests := []struct {
		name, method, path string
		synced             bool
		wantCode           int
		wantBody           string
	}{
		{name: "readyz before sync", method: http.MethodGet, path: "/readyz", wantCode: http.StatusServiceUnavailable, wantBody: "informers"},
		{name: "readyz once synced", method: http.MethodGet, path: "/readyz", synced: true, wantCode: http.StatusOK, wantBody: "standby"},
		{name: "status", method: http.MethodGet, path: "/api/v1/status", synced: true, wantCode: http.StatusServiceUnavailable, wantBody: "does not lead"},
		{name: "rollout command", method: http.MethodPost, path: "/api/v1/rollout", synced: true, wantCode: http.StatusServiceUnavailable, wantBody: "does not lead"},
		{name: "healthz", method: http.MethodGet, path: "/healthz", wantCode: http.StatusOK, wantBody: "next"},
		{name: "metrics", method: http.MethodGet, path: "/metrics", synced: true, wantCode: http.StatusOK, wantBody: "next"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := &cluster{elector: el, log: slog.New(slog.DiscardHandler)}
			cl.synced.Store(tt.synced)
			srv := httptest.NewServer(cl.adminHandler(next))
			defer srv.Close()
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("%s %s = %d %q; want %d with %q", tt.method, tt.path, resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

package reconciler

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitmesh/gitmesh/api/admin"
)

// AdminHandler serves the controller's admin API:
//
//	GET  /api/v1/status     Status as JSON
//	POST /api/v1/reconcile  fetch now (bearer token)
//	GET  /api/v1/history    past rollouts, newest first (?limit=N)
//	POST /api/v1/rollout    {"op": "promote|abort|pause|resume|rollback", "full": bool, "to": "REV"} (bearer token)
//	GET  /healthz           200 while the process runs
//	GET  /readyz            200 once a revision is being served
//	GET  /metrics           Prometheus metrics from gatherer
//
// Mutating calls need "Authorization: Bearer <token>". If gatherer is nil,
// /metrics is not served.
func AdminHandler(r *Reconciler, token string, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		admin.WriteJSON(w, http.StatusOK, r.Status())
	})
	mux.Handle("POST /api/v1/reconcile", RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.Trigger()
		admin.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "reconcile requested"})
	})))
	mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, req *http.Request) {
		limit, _ := strconv.Atoi(req.URL.Query().Get("limit"))
		h, err := r.History(limit)
		if err != nil {
			admin.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		admin.WriteJSON(w, http.StatusOK, h)
	})
	mux.Handle("POST /api/v1/rollout", RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var op admin.Request
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<16)).Decode(&op); err != nil {
			admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "decoding request: " + err.Error()})
			return
		}
		res, err := r.Do(req.Context(), op)
		if err != nil {
			admin.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		admin.WriteJSON(w, res.Code, res)
	})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		serving := r.stable != nil
		r.mu.Unlock()
		if !serving {
			http.Error(w, "no revision is being served yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// RequireToken rejects requests without the bearer token (401, JSON
// error), and every request when token is empty.
func RequireToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			admin.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, req)
	})
}

// LoadOrCreateToken reads the admin token from path, or, when the file does
// not exist, writes a new random one there with mode 0600.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("reading admin token %s: file is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading admin token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("writing admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing admin token: %w", err)
	}
	return tok, nil
}

package controller

import (
	"net/http"

	"github.com/gitmesh/gitmesh/internal/web"
)

// withWeb serves the web view (the page at /, its assets, the event
// stream and the traffic graph) with view and the rest with next.
func withWeb(view *web.Server, next http.Handler) http.Handler {
	h := view.Handler()
	mux := http.NewServeMux()
	mux.Handle("/{$}", h)
	mux.Handle("/ui/", h)
	mux.Handle("/api/v1/events", h)
	mux.Handle("/api/v1/graph", h)
	mux.Handle("/", next)
	return mux
}

package admin

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers an admin API request with v as indented JSON and the
// status code; the answer is never cached (it is live state).
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

package proxy

import (
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// TestForwardH1 checks what forwardH1 does as httputil.ReverseProxy does:
// hop-by-hop headers, x-forwarded-*, trailers, informational responses.
func TestForwardH1(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	b := echo(t, "b", func(w http.ResponseWriter, req *http.Request) bool {
		switch req.URL.Path {
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			w.Write([]byte("body"))
			w.Header().Set("X-Checksum", "abc")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
			return true
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Write([]byte("final"))
			return true
		case "/hop":
			w.Header().Set("Connection", "X-Hop")
			w.Header().Set("X-Hop", "1")
			w.Header().Set("Keep-Alive", "timeout=5")
		}
		return false
	})
	const c = "outbound|80||fh.default.svc.cluster.local"
	r.push(append(r.outboundHTTP(vhost("fh", []string{"fh"}, toCluster(prefixMatch("/"), c))),
		staticCluster(t, c, "fh.default.svc.cluster.local", []string{hostPort(b)}))...)

	t.Run("request headers", func(t *testing.T) {
		resp, _ := r.get("GET", "fh", "/", map[string]string{
			"X-Forwarded-For": "10.0.0.1", "Te": "trailers", "Proxy-Authorization": "secret", "X-Forwarded-Host": "spoofed",
		})
		for _, tc := range []struct{ header, want string }{
			{"X-Req-X-Forwarded-For", "10.0.0.1, 127.0.0.1"},
			{"X-Req-X-Forwarded-Host", "fh"},
			{"X-Req-X-Forwarded-Proto", "http"},
			{"X-Req-Te", "trailers"},
			{"X-Req-Proxy-Authorization", ""},
			{"X-Req-User-Agent", "Go-http-client/1.1"},
		} {
			if got := resp.Header.Get(tc.header); got != tc.want {
				t.Errorf("%s = %q; want %q", tc.header, got, tc.want)
			}
		}
		if resp.Header.Get("X-Req-X-Request-Id") == "" {
			t.Errorf("no x-request-id upstream")
		}
	})
	t.Run("hop-by-hop response headers removed", func(t *testing.T) {
		resp, _ := r.get("GET", "fh", "/hop", nil)
		for _, h := range []string{"X-Hop", "Keep-Alive"} {
			if got := resp.Header.Get(h); got != "" {
				t.Errorf("%s = %q; want none", h, got)
			}
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, body := r.get("GET", "fh", "/trailers", nil)
		if body != "body" {
			t.Errorf("body %q; want %q", body, "body")
		}
		for k, want := range map[string]string{"X-Checksum": "abc", "X-Late": "late"} {
			if got := resp.Trailer.Get(k); got != want {
				t.Errorf("trailer %s = %q; want %q", k, got, want)
			}
		}
	})
	t.Run("informational responses forwarded", func(t *testing.T) {
		var got []int
		var link string
		req := mustRequest(t, "http://"+r.out+"/hints", "fh")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, code)
				link = h.Get("Link")
				return nil
			},
		}))
		resp, body := r.do(req)
		if resp.StatusCode != 200 || body != "final" {
			t.Errorf("status %d body %q; want 200 %q", resp.StatusCode, body, "final")
		}
		if len(got) != 1 || got[0] != http.StatusEarlyHints || link == "" {
			t.Errorf("informational responses %v (Link %q); want one 103 with its Link", got, link)
		}
	})
}

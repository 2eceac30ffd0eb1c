package e2etest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
)

// Split sends n requests for host through the outbound listener and
// counts the answers (see Answer).
func Split(outbound, host string, n int) map[string]int {
	client := &http.Client{Timeout: HTTPTimeout}
	return Tally(n, func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+outbound+"/", nil)
		req.Host = host
		return client.Do(req)
	})
}

// SplitWith sends n GETs to target with client and counts the answers.
func SplitWith(client *http.Client, target string, n int) map[string]int {
	return Tally(n, func() (*http.Response, error) { return client.Get(target) })
}

// Tally calls send n times and counts the answers (see Answer).
func Tally(n int, send func() (*http.Response, error)) map[string]int {
	got := map[string]int{}
	for range n {
		got[Answer(send())]++
	}
	return got
}

// Answer reads and classifies a response: its body when the status is
// 200, "status N" otherwise, "error: ..." when the request failed.
func Answer(resp *http.Response, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	return string(b)
}

// PortOf returns the port of an address, a URL or an httptest server.
func PortOf(v any) string {
	var s string
	switch x := v.(type) {
	case *httptest.Server:
		// Never fmt.Sprint a server: that reads every field of it,
		// racing with its goroutines (go test -race reports it).
		s = x.URL
	case string:
		s = x
	default:
		s = fmt.Sprint(v)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	_, port, _ := net.SplitHostPort(s)
	return port
}

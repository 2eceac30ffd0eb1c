package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// counter counts triggers.
type counter struct{ n atomic.Int64 }

func (c *counter) Trigger() { c.n.Add(1) }

var _ Trigger = (*counter)(nil)

const testSecret = "It's a Secret to Everybody"

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

const (
	pushMain  = `{"ref":"refs/heads/main","after":"0123"}`
	pushOther = `{"ref":"refs/heads/feature","after":"0123"}`
	pushTag   = `{"ref":"refs/tags/v1.0.0"}`
)

func TestHandler(t *testing.T) {
	type request struct {
		path    string
		body    string
		headers map[string]string
	}
	github := func(body, sig, id string) request {
		h := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": id}
		if sig != "" {
			h["X-Hub-Signature-256"] = sig
		}
		return request{"/hooks/github", body, h}
	}
	gitlab := func(body, token, id string) request {
		h := map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": id}
		if token != "" {
			h["X-Gitlab-Token"] = token
		}
		return request{"/hooks/gitlab", body, h}
	}
	generic := func(body, sig, id string) request {
		h := map[string]string{"X-Delivery-Id": id}
		if sig != "" {
			h["X-Signature-256"] = sig
		}
		return request{"/hooks/generic", body, h}
	}
	big := strings.Repeat("x", 2048)
	tests := []struct {
		name     string
		reqs     []request
		want     []int // status per request
		triggers int64
	}{
		{"github good", []request{github(pushMain, sign(testSecret, pushMain), "d1")}, []int{202}, 1},
		{"github bad signature", []request{github(pushMain, sign("wrong", pushMain), "d1")}, []int{401}, 0},
		{"github signature of another body", []request{github(pushMain, sign(testSecret, pushOther), "d1")}, []int{401}, 0},
		{"github missing signature", []request{github(pushMain, "", "d1")}, []int{401}, 0},
		{"github sha1 signature refused", []request{github(pushMain, "sha1=00", "d1")}, []int{401}, 0},
		{"github non-hex signature", []request{github(pushMain, "sha256=zz", "d1")}, []int{401}, 0},
		{"github ping", []request{{"/hooks/github", `{"zen":"hi"}`, map[string]string{
			"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p1", "X-Hub-Signature-256": sign(testSecret, `{"zen":"hi"}`)}}}, []int{200}, 0},
		{"github unsigned ping", []request{{"/hooks/github", `{}`, map[string]string{"X-GitHub-Event": "ping"}}}, []int{401}, 0},
		{"github other branch", []request{github(pushOther, sign(testSecret, pushOther), "d1")}, []int{202}, 0},
		{"github tag push triggers", []request{github(pushTag, sign(testSecret, pushTag), "d1")}, []int{202}, 1},
		{"github unparsable body triggers", []request{github("not json", sign(testSecret, "not json"), "d1")}, []int{202}, 1},
		{"github too large", []request{github(big, sign(testSecret, big), "d1")}, []int{413}, 0},
		{"github replay", []request{
			github(pushMain, sign(testSecret, pushMain), "d1"),
			github(pushMain, sign(testSecret, pushMain), "d1"),
			github(pushMain, sign(testSecret, pushMain), "d2"),
		}, []int{202, 202, 202}, 2},
		{"forged replay does not burn an id", []request{
			github(pushMain, sign("wrong", pushMain), "d1"),
			github(pushMain, sign(testSecret, pushMain), "d1"),
		}, []int{401, 202}, 1},
		{"no delivery id: no replay check", []request{
			github(pushMain, sign(testSecret, pushMain), ""),
			github(pushMain, sign(testSecret, pushMain), ""),
		}, []int{202, 202}, 2},
		{"gitlab good", []request{gitlab(pushMain, testSecret, "u1")}, []int{202}, 1},
		{"gitlab bad token", []request{gitlab(pushMain, testSecret+"x", "u1")}, []int{401}, 0},
		{"gitlab missing token", []request{gitlab(pushMain, "", "u1")}, []int{401}, 0},
		{"gitlab other branch", []request{gitlab(pushOther, testSecret, "u1")}, []int{202}, 0},
		{"gitlab too large", []request{gitlab(big, testSecret, "u1")}, []int{413}, 0},
		{"gitlab replay", []request{gitlab(pushMain, testSecret, "u1"), gitlab(pushMain, testSecret, "u1")}, []int{202, 202}, 1},
		{"generic good", []request{generic(pushMain, sign(testSecret, pushMain), "g1")}, []int{202}, 1},
		{"generic empty body", []request{generic("", sign(testSecret, ""), "g1")}, []int{202}, 1},
		{"generic bad signature", []request{generic(pushMain, sign("nope", pushMain), "g1")}, []int{401}, 0},
		{"generic missing signature", []request{generic(pushMain, "", "g1")}, []int{401}, 0},
		{"generic other branch", []request{generic(pushOther, sign(testSecret, pushOther), "g1")}, []int{202}, 0},
		{"generic too large", []request{generic(big, sign(testSecret, big), "g1")}, []int{413}, 0},
		{"generic replay", []request{
			generic(pushMain, sign(testSecret, pushMain), "g1"),
			generic(pushMain, sign(testSecret, pushMain), "g1"),
		}, []int{202, 202}, 1},
		{"same id from two providers is two deliveries", []request{
			generic(pushMain, sign(testSecret, pushMain), "x"),
			github(pushMain, sign(testSecret, pushMain), "x"),
		}, []int{202, 202}, 2},
		{"unknown provider", []request{{"/hooks/bitbucket", pushMain, nil}}, []int{404}, 0},
		{"GET", []request{{"/hooks/github", "", nil}}, []int{405}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c counter
			h, err := New([]byte(testSecret), &c, WithBranch("main"), WithMaxBodyBytes(1024))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			for i, r := range tt.reqs {
				method := http.MethodPost
				if tt.name == "GET" {
					method = http.MethodGet
				}
				req, err := http.NewRequest(method, srv.URL+r.path, strings.NewReader(r.body))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range r.headers {
					if v != "" {
						req.Header.Set(k, v)
					}
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want[i] {
					t.Errorf("request %d: got %d (%s); want %d", i, resp.StatusCode, strings.TrimSpace(buf.String()), tt.want[i])
				}
				if strings.Contains(buf.String(), testSecret) {
					t.Errorf("request %d: response %q holds the secret", i, buf.String())
				}
			}
			if got := c.n.Load(); got != tt.triggers {
				t.Errorf("got %d triggers; want %d", got, tt.triggers)
			}
		})
	}
}

func TestNoBranchFilter(t *testing.T) {
	var c counter
	h, err := New([]byte(testSecret), &c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/generic", strings.NewReader(pushOther))
	req.Header.Set("X-Signature-256", sign(testSecret, pushOther))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || c.n.Load() != 1 {
		t.Errorf("got %d with %d triggers; want 202 with 1", resp.StatusCode, c.n.Load())
	}
}

func TestNewRefusesEmptySecret(t *testing.T) {
	if _, err := New(nil, new(counter)); err == nil {
		t.Error("New with an empty secret: got nil error")
	}
}

func TestReplayWindow(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name    string
		size    int
		steps   []string // ids; "+" advances the clock by the window
		wantDup []bool
	}{
		{"repeat", 4, []string{"a", "a"}, []bool{false, true}},
		{"expired", 4, []string{"a", "+", "a", "a"}, []bool{false, false, true}},
		{"evicted by size", 2, []string{"a", "b", "c", "a"}, []bool{false, false, false, false}},
		{"kept within size", 2, []string{"a", "b", "b", "a"}, []bool{false, false, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Unix(0, 0)
			r := newRecent(tt.size, time.Minute, clock)
			var got []bool
			for _, s := range tt.steps {
				if s == "+" {
					now = now.Add(time.Minute)
					continue
				}
				got = append(got, r.seenBefore(s))
			}
			for i := range tt.wantDup {
				if got[i] != tt.wantDup[i] {
					t.Fatalf("got %v; want %v", got, tt.wantDup)
				}
			}
			if len(r.seen) > tt.size {
				t.Errorf("remembers %d ids; want at most %d", len(r.seen), tt.size)
			}
		})
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          string
		wantErr       bool
	}{
		{"trailing newline", "s3cret\n", "s3cret", false},
		{"empty", "\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadSecret(p)
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: got nil error")
	}
}

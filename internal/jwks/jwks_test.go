package jwks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/internal/faultnet"
)

const goodJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`

// idp is an identity provider on loopback whose answer the test switches.
type idp struct {
	srv    *httptest.Server
	status atomic.Int32
	body   atomic.Value // string
	hits   atomic.Int32
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{}
	p.status.Store(http.StatusOK)
	p.body.Store(goodJWKS)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		w.WriteHeader(int(p.status.Load()))
		_, _ = w.Write([]byte(p.body.Load().(string)))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr bool
	}{
		{name: "jwks", status: 200, body: goodJWKS},
		{name: "server error", status: 500, body: "oops", wantErr: true},
		{name: "lies: not a jwks", status: 200, body: `{"issuer":"x"}`, wantErr: true},
		{name: "lies: html", status: 200, body: `<html>`, wantErr: true},
		{name: "too large", status: 200, body: `{"keys":[` + string(make([]byte, 2048)) + `]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIDP(t)
			p.status.Store(int32(tt.status))
			p.body.Store(tt.body)
			r := New(WithMaxBytes(1024))
			uri := p.srv.URL + "/jwks.json"
			keys, errs := r.Resolve(context.Background(), []string{uri}, DefaultRefresh)
			if gotErr := errs[uri] != nil; gotErr != tt.wantErr {
				t.Fatalf("error = %v; want error %v", errs[uri], tt.wantErr)
			}
			if !tt.wantErr && string(keys[uri]) != tt.body {
				t.Errorf("keys = %q; want %q", keys[uri], tt.body)
			}
		})
	}
}

func TestResolveCachesAndKeepsLastGood(t *testing.T) {
	p := newIDP(t)
	r := New()
	uri := p.srv.URL + "/jwks.json"
	ctx := context.Background()
	if _, errs := r.Resolve(ctx, []string{uri}, DefaultRefresh); len(errs) != 0 {
		t.Fatal(errs)
	}
	if _, errs := r.Resolve(ctx, []string{uri}, DefaultRefresh); len(errs) != 0 || p.hits.Load() != 1 {
		t.Fatalf("hits = %d, errs %v; want the cached document", p.hits.Load(), errs)
	}
	p.status.Store(http.StatusServiceUnavailable)
	keys, errs := r.Resolve(ctx, []string{uri}, 0)
	if p.hits.Load() != 2 || len(errs) != 0 || string(keys[uri]) != goodJWKS {
		t.Fatalf("refresh during an outage: hits %d, keys %q, errs %v; want the last good keys", p.hits.Load(), keys[uri], errs)
	}
}

func TestResolveHangingServerIsBounded(t *testing.T) {
	bh, err := faultnet.NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bh.Close() })
	r := New(WithTimeout(200 * time.Millisecond))
	start := time.Now()
	uri := bh.URL("/jwks.json")
	_, errs := r.Resolve(context.Background(), []string{uri}, DefaultRefresh)
	if !errors.Is(errs[uri], context.DeadlineExceeded) {
		t.Fatalf("error = %v; want a deadline", errs[uri])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s; want about the 200ms timeout", d)
	}
}

func TestResolveOpenIDDiscovery(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"` + srv.URL + `","jwks_uri":"` + srv.URL + `/keys"}`))
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(goodJWKS)) })
	uri := srv.URL + "/.well-known/openid-configuration"
	keys, errs := New().Resolve(context.Background(), []string{uri}, DefaultRefresh)
	if len(errs) != 0 || string(keys[uri]) != goodJWKS {
		t.Fatalf("keys %q, errs %v; want the JWKS at jwks_uri", keys[uri], errs)
	}
}

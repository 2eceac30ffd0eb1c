package reconciler

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/faultnet"
	"github.com/gitmesh/gitmesh/internal/jwks"
)

// Two JWKS documents of an identity provider, before and after a key
// rotation (public keys only).
const (
	jwksBefore = `{"keys":[{"kty":"EC","crv":"P-256","kid":"before","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`
	jwksAfter  = `{"keys":[{"kty":"EC","crv":"P-256","kid":"after","x":"1ct5lBxdSd6OavI5Gsm8LdyUxDpM__6_l5kc49jNcLU","y":"cgQCIU9dgKIMGewyc44Iq9diZi4lbGoaQ3WvxwPJX_o"}]}`
)

// authnFiles is policyFiles plus a RequestAuthentication for reviews whose
// keys are at jwksURI.
func authnFiles(jwksURI string) map[string]string {
	files := policyFiles("v1", "  waves:\n  - {name: everyone, percent: 100}\n")
	files["authn.yaml"] = fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: https://idp.example
    jwksUri: %s
`, jwksURI)
	return files
}

func TestJWKSFetchedWithRevisionAndRefreshed(t *testing.T) {
	var body atomic.Value
	body.Store(jwksBefore)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(body.Load().(string)))
	}))
	t.Cleanup(idp.Close)

	r, stop := startJWKSReconciler(t, authnFiles(idp.URL+"/jwks.json"), time.Second, 20*time.Millisecond, nil)
	defer stop()
	waitJWKS(t, r, jwksBefore)
	body.Store(jwksAfter)
	waitJWKS(t, r, jwksAfter)
}

// TestJWKSFetchedForRestoredRevision restarts the controller: the revision
// restored from the state store (parsed on the loop, without keys) gets
// its keys from a fetch after the restore.
func TestJWKSFetchedForRestoredRevision(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(jwksBefore))
	}))
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	open := func() *Store {
		st, err := OpenStore(dir, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	r, stop := startJWKSReconciler(t, authnFiles(idp.URL+"/jwks.json"), time.Second, time.Hour, st)
	waitJWKS(t, r, jwksBefore)
	stop()
	st.Close()

	st = open()
	defer st.Close()
	r, stop = startJWKSReconciler(t, nil, time.Second, time.Hour, st) // no commit: the restored revision stays
	defer stop()
	waitJWKS(t, r, jwksBefore)
}

func TestJWKSHangingServerDoesNotBlockTheRevision(t *testing.T) {
	bh, err := faultnet.NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bh.Close() })
	start := time.Now()
	r, stop := startJWKSReconciler(t, authnFiles(bh.URL("/jwks.json")), 300*time.Millisecond, time.Hour, nil)
	defer stop()
	// The revision is adopted with Istio's fail-closed keys once the
	// bounded fetch gives up.
	waitJWKS(t, r, "gitmesh-unavailable")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("adopted after %s; want about the 300ms fetch timeout", d)
	}
}

// startJWKSReconciler runs a reconciler over one revision with a real
// jwks.Resolver and store st (nil: none). With files nil the source has no
// commit and every fetch fails.
func startJWKSReconciler(t *testing.T, files map[string]string, fetchTimeout, refresh time.Duration, st *Store) (*Reconciler, func()) {
	t.Helper()
	src := newFakeSource(t)
	if files != nil {
		src.commit(files)
	}
	fleet := newFakeFleet()
	fleet.connect("node-0", "")
	cfg := Config{
		Source: src, Fleet: fleet, Interval: time.Hour, Tick: testTick, FetchTimeout: fetchTimeout,
		JWKS: jwks.New(jwks.WithTimeout(fetchTimeout)), JWKSRefresh: refresh,
	}
	if st != nil {
		cfg.Store = st
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Errorf("Run did not return")
		}
	}
}

// waitJWKS polls until the stable revision's reviews sidecar carries a
// local_jwks containing want.
func waitJWKS(t *testing.T, r *Reconciler, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	last := ""
	for time.Now().Before(deadline) {
		if last = compiledJWKS(t, r); last != "" && strings.Contains(last, want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("local_jwks = %q; want it to contain %q", last, want)
}

// compiledJWKS compiles the stable revision, on the Run goroutine, for a
// reviews sidecar and returns its jwt_authn provider's inline JWKS.
func compiledJWKS(t *testing.T, r *Reconciler) string {
	t.Helper()
	out := make(chan string, 1)
	r.results <- func(context.Context) {
		r.mu.Lock()
		s := r.stable
		r.mu.Unlock()
		if s == nil {
			out <- ""
			return
		}
		snap, err := s.Policy.Compile(nodemeta.ProxyClass{
			Role: nodemeta.RoleSidecar, Namespace: "default", Labels: map[string]string{"app": "reviews"},
			Inbound: "127.0.0.1:15006", App: "127.0.0.1:9080",
		}, nil)
		if err != nil {
			t.Error(err)
			out <- ""
			return
		}
		l, _ := snap.Resources.GetResources(resourcev3.ListenerType)["inbound"].(*listenerv3.Listener)
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Error(err)
		}
		cfg := &jwtv3.JwtAuthentication{}
		if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
			out <- ""
			return
		}
		out <- cfg.GetProviders()["origins-0"].GetLocalJwks().GetInlineString()
	}
	select {
	case s := <-out:
		return s
	case <-time.After(waitLimit):
		t.Fatal("Run did not take the probe")
	}
	return ""
}

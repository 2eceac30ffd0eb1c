package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// httpbinService is a Kubernetes Service in Git whose endpoints are the
// sidecars labelled app=httpbin.
const httpbinService = `apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: default
spec:
  selector:
    app: httpbin
  ports:
  - name: http
    port: 8000
    targetPort: 80
`

// echoApp answers every request with what a mesh app learns of its
// caller: the X-Forwarded-Client-Cert header the sidecar set.
func echoApp(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xfcc=%s", r.Header.Get("X-Forwarded-Client-Cert"))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// call sends method path to host through the sidecar outbound listener
// out (or straight to an inbound listener), with headers, and returns the
// status and body, or "error: ..." as the body.
func call(out, host, method, path string, headers map[string]string) (int, string) {
	req, _ := http.NewRequest(method, "http://"+out+path, nil)
	req.Host = host
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	// A connection each: one kept alive from before a policy change would
	// be served by the filter chain it was accepted on.
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// zeroTrustMesh is a controller, an httpbin sidecar (service account
// httpbin) in front of echoApp, and two client sidecars: sleep (service
// account sleep) and other (service account other).
type zeroTrustMesh struct {
	*mesh
	repo                  *e2etest.GitRemote
	httpbin, sleep, other nodemeta.Workload
}

func startZeroTrustMesh(t *testing.T, configure ...func(*controller.Config)) *zeroTrustMesh {
	t.Helper()
	repo := e2etest.NewGitRemote(t)
	sha := repo.Push("httpbin service", map[string]string{"policy/httpbin.yaml": httpbinService})
	cfg := controllerConfig(t, repo.URL, t.TempDir(), 200*time.Millisecond)
	for _, c := range configure {
		c(&cfg)
	}
	m := startControllerConfig(t, cfg)
	z := &zeroTrustMesh{mesh: m, repo: repo}
	z.httpbin = e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "httpbin-1", Service: "httpbin", Namespace: "default", ServiceAccount: "httpbin", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "httpbin"}, Inbound: testnet.FreeAddr(t), App: echoApp(t),
	})
	for _, c := range []*nodemeta.Workload{&z.sleep, &z.other} {
		name := map[*nodemeta.Workload]string{&z.sleep: "sleep", &z.other: "other"}[c]
		*c = e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
			ID: name, Service: name, Namespace: "default", ServiceAccount: name, Role: nodemeta.RoleSidecar,
			Labels: map[string]string{"app": name}, Outbound: testnet.FreeAddr(t),
		})
	}
	z.waitSynced(t, sha)
	return z
}

func (z *zeroTrustMesh) waitSynced(t *testing.T, sha string) {
	t.Helper()
	e2etest.Eventually(t, 30*time.Second, "revision "+sha+" on every proxy", func() string { return synced(z.mesh, sha, 3) })
}

// push commits policy files on top of the Service and waits until every
// proxy runs them.
func (z *zeroTrustMesh) push(t *testing.T, msg string, files map[string]string) {
	t.Helper()
	files["policy/httpbin.yaml"] = httpbinService
	z.waitSynced(t, z.repo.Push(msg, files))
}

const (
	sleepID   = "spiffe://cluster.local/ns/default/sa/sleep"
	httpbinID = "spiffe://cluster.local/ns/default/sa/httpbin"
)

// TestMutualTLSBetweenSidecars: with no security policy at all, sidecars
// talk mTLS (auto mTLS, PERMISSIVE inbound) and the app sees its caller's
// SPIFFE id in XFCC; plain text still reaches the inbound listener until a
// STRICT PeerAuthentication refuses it, while mesh traffic goes on.
func TestMutualTLSBetweenSidecars(t *testing.T) {
	z := startZeroTrustMesh(t)

	t.Run("auto mTLS, caller identity in XFCC", func(t *testing.T) {
		e2etest.Eventually(t, 20*time.Second, "sleep -> httpbin over mTLS", func() string {
			code, body := call(z.sleep.Outbound, "httpbin:8000", "GET", "/headers", nil)
			if code != 200 || !strings.Contains(body, "URI="+sleepID) || !strings.Contains(body, "By="+httpbinID) {
				return fmt.Sprintf("status %d, body %q; want 200 with By=%s and URI=%s", code, body, httpbinID, sleepID)
			}
			return ""
		})
	})

	t.Run("PERMISSIVE accepts plain text and drops a forged XFCC", func(t *testing.T) {
		code, body := call(z.httpbin.Inbound, "httpbin:8000", "GET", "/", map[string]string{"X-Forwarded-Client-Cert": "URI=" + sleepID})
		if code != 200 || body != "xfcc=" {
			t.Fatalf("plain text to the inbound listener: status %d, body %q; want 200 and no XFCC", code, body)
		}
	})

	z.push(t, "mesh: STRICT mTLS in default", map[string]string{"policy/peer.yaml": `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: default
spec:
  mtls:
    mode: STRICT
`})

	t.Run("STRICT refuses plain text", func(t *testing.T) {
		e2etest.Eventually(t, 20*time.Second, "plain text refused", func() string {
			if code, body := call(z.httpbin.Inbound, "httpbin:8000", "GET", "/", nil); code != 0 {
				return fmt.Sprintf("plain text got status %d (%q); want the connection refused", code, body)
			}
			return ""
		})
		if code, body := call(z.sleep.Outbound, "httpbin:8000", "GET", "/", nil); code != 200 || !strings.Contains(body, "URI="+sleepID) {
			t.Fatalf("mesh traffic under STRICT: status %d, body %q", code, body)
		}
	})
}

// xfccHash matches the caller's certificate hash in XFCC.
var xfccHash = regexp.MustCompile(`Hash=([0-9a-f]+)`)

// TestCertificateRotationUnderTraffic renews workload certificates every
// second (a 2 s lifetime) and rotates the root, then prunes the old one,
// while four clients send requests through two sidecars, each on a new
// mTLS connection: not one request may fail.
func TestCertificateRotationUnderTraffic(t *testing.T) {
	z := startZeroTrustMesh(t, func(c *controller.Config) { c.CA.CertTTL = 2 * time.Second })
	z.push(t, "httpbin: a connection per request", map[string]string{"policy/dr.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
  namespace: default
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 1
`})

	var (
		total, failed atomic.Int64
		mu            sync.Mutex
		hashes        = map[string]bool{}
		firstFailures []string
	)
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(hashes)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body := call(z.sleep.Outbound, "httpbin:8000", "GET", "/", nil)
				total.Add(1)
				m := xfccHash.FindStringSubmatch(body)
				mu.Lock()
				if code != 200 || m == nil || !strings.Contains(body, "URI="+sleepID) {
					failed.Add(1)
					if len(firstFailures) < 5 {
						firstFailures = append(firstFailures, fmt.Sprintf("status %d: %q", code, body))
					}
				} else {
					hashes[m[1]] = true
				}
				mu.Unlock()
			}
		})
	}
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()

	e2etest.Eventually(t, 20*time.Second, "three client certificates in use, one after another", func() string {
		if n := distinct(); n < 3 {
			return fmt.Sprintf("%d distinct client certificates seen", n)
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := distinct()
	if _, err := z.ctrl.CA.Rotate(ctx); err != nil {
		t.Fatalf("rotating the root: %v", err)
	}
	e2etest.Poll(t, 20*time.Second, 200*time.Millisecond, "pruning the old root", func() error {
		_, err := z.ctrl.CA.Prune(ctx, false)
		return err
	})
	if st := z.ctrl.CA.Status(); st.TrustedRoots != 1 {
		t.Errorf("trusted roots after prune = %d, want 1", st.TrustedRoots)
	}
	e2etest.Eventually(t, 20*time.Second, "new-root certificates in use after the prune", func() string {
		if n := distinct(); n < before+2 {
			return fmt.Sprintf("%d distinct client certificates seen, want %d", n, before+2)
		}
		return ""
	})
	halt()
	t.Logf("%d requests, %d failed, %d client certificates seen", total.Load(), failed.Load(), distinct())
	if failed.Load() > 0 || total.Load() < 100 {
		t.Fatalf("%d of %d requests failed during rotation (first: %v); want none of at least 100", failed.Load(), total.Load(), firstFailures)
	}
}

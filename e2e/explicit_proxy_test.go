package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// TestExplicitProxy is the capture mode that needs no privileges: the app
// finds its sidecar in HTTP_PROXY, as Go, curl and most HTTP clients do,
// and sends absolute-URI requests to the outbound listener, which routes
// them by host per the VirtualService (docs/capture.md). A host the mesh
// does not know gets 404 (NR): without capture there is no original
// destination to pass it through to.
func TestExplicitProxy(t *testing.T) {
	v1, v2 := echoBackend(t, "v1"), echoBackend(t, "v2")
	repo := e2etest.NewGitRemote(t)
	repo.Push("shop", capturePolicy("127.0.0.1", e2etest.PortOf(v1), e2etest.PortOf(v2), e2etest.PortOf(tcpEchoBackend(t, "db"))))
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")
	w := e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "app-1", Service: "app", Namespace: "shop", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "app"}, Outbound: testnet.FreeAddr(t),
	})

	// The app's environment, read as net/http's ProxyFromEnvironment
	// reads it (which caches it for the process, hence httpproxy here).
	t.Setenv("HTTP_PROXY", "http://"+w.Outbound)
	t.Setenv("NO_PROXY", "")
	proxyFunc := httpproxy.FromEnvironment().ProxyFunc()
	app := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) { return proxyFunc(r.URL) },
	}}
	t.Cleanup(app.CloseIdleConnections)
	get := func(u string) (int, string, error) {
		resp, err := app.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	e2etest.Eventually(t, 15*time.Second, "the app reaches reviews through HTTP_PROXY", func() string {
		code, body, err := get("http://reviews.shop.svc.cluster.local:9080/")
		if err != nil {
			return err.Error()
		}
		if code != 200 || body != "v2" {
			return fmt.Sprintf("%d %q", code, body)
		}
		return ""
	})
	for _, tc := range []struct {
		url      string
		wantCode int
		wantBody string
	}{
		{"http://reviews.shop.svc.cluster.local:9080/", 200, "v2"},
		{"http://reviews:9080/", 200, "v2"},
		{"http://reviews.shop/", 200, "v2"},
		{"http://unknown.example.com/", http.StatusNotFound, ""},
	} {
		t.Run(tc.url, func(t *testing.T) {
			for range 3 {
				code, body, err := get(tc.url)
				if err != nil {
					t.Fatal(err)
				}
				if code != tc.wantCode || (tc.wantBody != "" && body != tc.wantBody) {
					t.Errorf("GET %s: %d %q; want %d %q", tc.url, code, body, tc.wantCode, tc.wantBody)
				}
			}
		})
	}
}

// capturePolicy is the shop namespace's services: reviews (HTTP, two
// versions on the host side of the veth, the VirtualService sends all to
// v2) and db (TCP), each with a service address.
func capturePolicy(hostIP, v1, v2, db string) map[string]string {
	services := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [10.96.0.10]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: %[1]s, ports: {http: %[2]s}, labels: {version: v1}}
  - {address: %[1]s, ports: {http: %[3]s}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.shop.svc.cluster.local]
  addresses: [10.96.0.20]
  ports: [{number: 5432, name: tcp-db, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: %[1]s, ports: {tcp-db: %[4]s}}
`, hostIP, v1, v2, db)
	routes := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.shop.svc.cluster.local, subset: v2}
`
	return map[string]string{"policy/services.yaml": services, "policy/routes.yaml": routes}
}

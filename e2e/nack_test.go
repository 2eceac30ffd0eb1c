package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// Gateways go first, then everyone.
const gatewaysFirst = `apiVersion: gitmesh.io/v1alpha1
kind: RolloutPolicy
metadata: {name: default}
spec:
  waves:
  - name: gateways
    selector: {matchLabels: {istio: ingressgateway}}
    bake: 1s
  - {name: everyone, percent: 100}
  progressDeadline: 1m
`

// edgeGateway is a Gateway serving reviews.example.com on httpPort, plus
// extra servers.
func edgeGateway(httpPort, extra string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: %s, name: http, protocol: HTTP}
    hosts: ["reviews.example.com"]
%s---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-edge
spec:
  hosts: ["reviews.example.com"]
  gateways: [edge]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
`, httpPort, extra)
}

// startGateway runs a gateway proxy announcing labels istio=ingressgateway
// and the given listen addresses.
func startGateway(t testing.TB, xdsAddr, id string, addrs ...string) {
	t.Helper()
	e2etest.RunProxy(t, xdsAddr, nodemeta.Workload{
		ID: id, Service: "gateway", Namespace: "default", Role: nodemeta.RoleGateway,
		Labels: map[string]string{"istio": "ingressgateway"}, Gateway: addrs,
	})
}

// TestRolloutStopsOnNACK: a revision the compiler accepts but a proxy
// cannot apply (an HTTPS Gateway server whose certificate file does not
// exist on the gateway host; the compiler does no I/O, so only the proxy
// can tell) is NACKed in wave 1 and rolled back; it never reaches wave 2,
// and the gateway keeps serving its last good config.
func TestRolloutStopsOnNACK(t *testing.T) {
	cm := newCanaryMesh(t, gatewaysFirst)
	httpAddr, httpsAddr := testnet.FreeAddr(t), testnet.FreeAddr(t)
	httpPort, httpsPort := e2etest.PortOf(httpAddr), e2etest.PortOf(httpsAddr)
	startGateway(t, cm.xdsAddr, "gateway-1", httpAddr, httpsAddr)

	files := canaryPolicy(cm.v1, cm.v2, cm.b, allV1, gatewaysFirst)
	files["policy/gateway.yaml"] = edgeGateway(httpPort, "")
	sha := cm.repo.Push("edge: serve reviews.example.com", files)
	cm.waitRollout(t, sha, admin.PhasePromoted, 60*time.Second)
	viaGateway := func() string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
		req.Host = "reviews.example.com"
		return e2etest.Answer((&http.Client{Timeout: e2etest.HTTPTimeout}).Do(req))
	}
	e2etest.Eventually(t, 10*time.Second, "gateway serves reviews", func() string {
		if got := viaGateway(); got != "v1" {
			return got
		}
		return ""
	})

	pushed := time.Now()
	files = canaryPolicy(cm.v1, cm.v2, cm.b, allV2, gatewaysFirst)
	files["policy/gateway.yaml"] = edgeGateway(httpPort, fmt.Sprintf(`  - port: {number: %s, name: https, protocol: HTTPS}
    hosts: ["reviews.example.com"]
    tls:
      mode: SIMPLE
      serverCertificate: /nonexistent/gitmesh-e2e/cert.pem
      privateKey: /nonexistent/gitmesh-e2e/key.pem
`, httpsPort))
	sha = cm.repo.Push("edge: HTTPS with a certificate that is not on the gateway hosts; reviews to v2", files)
	ro := cm.waitRollout(t, sha, admin.PhaseRolledBack, 60*time.Second)
	if !strings.Contains(ro.Reason, "gateway-1 NACKed") || !strings.Contains(ro.Reason, "cert.pem") {
		t.Errorf("reason = %q; want the NACK of gateway-1 naming the certificate file", ro.Reason)
	}
	t.Logf("rolled back: %s", ro.Reason)
	if ro.Wave != 0 || !ro.Waves[1].StartedAt.IsZero() {
		t.Errorf("rollout reached wave %d (%+v); want it stopped in wave 1", ro.Wave+1, ro.Waves)
	}
	for _, id := range cm.ids {
		if at := cm.load.firstAfter(id, "v2", pushed); !at.IsZero() {
			t.Errorf("sidecar %s (wave 2) served the NACKed revision's v2 at %v", id, at)
		}
	}
	if got := viaGateway(); got != "v1" {
		t.Errorf("via the gateway after its NACK: got %q; want the last good config to keep serving v1", got)
	}
	st := cm.status()
	for _, p := range st.Proxies {
		if p.ID == "gateway-1" {
			e2etest.Eventually(t, 10*time.Second, "gateway back on the last good version", func() string {
				for _, p := range cm.status().Proxies {
					if p.ID == "gateway-1" && (p.State != "SYNCED" || p.Revision != st.LastAppliedRevision) {
						return fmt.Sprintf("%+v", p)
					}
				}
				return ""
			})
		}
	}
}

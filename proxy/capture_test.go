package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// TestPassthroughWithoutRedirect: a connection that iptables did not
// redirect has no original destination, so a route to an ORIGINAL_DST
// cluster answers 503 UH instead of looping back into the proxy, and a
// bind_to_port: false listener binds nothing. Redirected connections are
// exercised in e2e/capture_test.go (network namespaces, real iptables).
func TestPassthroughWithoutRedirect(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	out := hcmListener(t, "outbound", r.out, "outbound")
	out.UseOriginalDst = wrapperspb.Bool(true)
	unbound := freeAddr(t)
	virtual := hcmListener(t, "0.0.0.0_9080", unbound, "outbound")
	virtual.BindToPort = wrapperspb.Bool(false)
	for _, m := range []types.Resource{out, virtual} {
		if err := m.(*listenerv3.Listener).ValidateAll(); err != nil {
			t.Fatal(err)
		}
	}
	r.push(out, virtual, passthroughCluster(),
		routeConfig("outbound", vhost("allow_any", []string{"*"}, toCluster(prefixMatch("/"), "PassthroughCluster"))))

	resp, body := r.get("GET", "unknown.example.com", "/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no healthy upstream") {
		t.Errorf("status %d %q; want 503 no healthy upstream", resp.StatusCode, body)
	}
	if got := r.metricLines("istio_requests_total", `response_flags="UH"`); len(got) == 0 {
		t.Errorf("no istio_requests_total with response_flags UH in\n%s", r.metrics())
	}
	if c, err := net.DialTimeout("tcp", unbound, time.Second); err == nil {
		c.Close()
		t.Errorf("dialling %s: a bind_to_port: false listener accepts connections", unbound)
	}
	for _, a := range r.proxy.listeners.addrs() {
		if a == unbound {
			t.Errorf("bound addresses %v include the bind_to_port: false listener", r.proxy.listeners.addrs())
		}
	}
}

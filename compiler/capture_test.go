package compiler

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

const captureEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [%s]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.7}]
`

// TestCaptureModes compiles one policy for a sidecar without capture,
// with capture under ALLOW_ANY and with capture under REGISTRY_ONLY.
func TestCaptureModes(t *testing.T) {
	registryOnly := `---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`
	for _, tc := range []struct {
		name         string
		interception string
		extra        string
		// want: the catch-all virtual host, the cluster of the outbound
		// listener's TLS chain ("" for none), the VIP domain present.
		wantCatchAll, wantTLS string
		wantVIP               bool
	}{
		{name: "no capture", wantCatchAll: "", wantTLS: "", wantVIP: false},
		{name: "no capture, registry only", extra: registryOnly, wantCatchAll: blackHoleName},
		{name: "capture", interception: nodemeta.InterceptionRedirect, wantCatchAll: allowAnyName, wantTLS: passthroughClusterName, wantVIP: true},
		{name: "capture, registry only", interception: nodemeta.InterceptionRedirect, extra: registryOnly, wantCatchAll: blackHoleName, wantTLS: blackHoleClusterName, wantVIP: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(captureEntry, "%s", "10.96.0.10", 1) + tc.extra
			class := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "shop", Outbound: "127.0.0.1:15001", Interception: tc.interception}
			snap := compileCase(t, splitObjects("capture.yaml", []byte(src)), class, nil)
			rc := snap.Resources.Resources[types.Route].Items[outboundName].Resource.(*routev3.RouteConfiguration)
			catchAll, vip := "", false
			for _, vh := range rc.GetVirtualHosts() {
				for _, d := range vh.GetDomains() {
					if d == "*" {
						catchAll = vh.GetName()
					}
					if d == "10.96.0.10" {
						vip = true
					}
				}
			}
			if catchAll != tc.wantCatchAll || vip != tc.wantVIP {
				t.Errorf("catch-all virtual host %q, VIP domain %v; want %q, %v", catchAll, vip, tc.wantCatchAll, tc.wantVIP)
			}
			l := snap.Resources.Resources[types.Listener].Items[outboundName].Resource.(*listenerv3.Listener)
			tlsTarget := ""
			for _, fc := range l.GetFilterChains() {
				if fc.GetFilterChainMatch().GetTransportProtocol() == "tls" {
					tp := &tcpproxyv3.TcpProxy{}
					if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil {
						t.Fatal(err)
					}
					tlsTarget = tp.GetCluster()
				}
			}
			if tlsTarget != tc.wantTLS || l.GetUseOriginalDst().GetValue() != (tc.interception != "") {
				t.Errorf("TLS chain to %q, use_original_dst %v; want %q, %v", tlsTarget, l.GetUseOriginalDst().GetValue(), tc.wantTLS, tc.interception != "")
			}
		})
	}
}

// TestServiceEntryAddresses: single addresses (or one-address CIDR
// ranges) are service addresses; wider ranges are not supported yet.
func TestServiceEntryAddresses(t *testing.T) {
	for _, tc := range []struct {
		addresses string
		wantCode  string
	}{
		{addresses: "10.96.0.10"},
		{addresses: "10.96.0.10/32, fd00::10"},
		{addresses: "10.96.0.0/24", wantCode: CodeUnsupportedValue},
		{addresses: "reviews.example", wantCode: CodeInvalidValue},
	} {
		t.Run(tc.addresses, func(t *testing.T) {
			src := strings.Replace(captureEntry, "%s", tc.addresses, 1)
			_, diags := Parse(splitObjects("capture.yaml", []byte(src)))
			got := ""
			for _, d := range diags {
				got = d.Code
			}
			if got != tc.wantCode {
				t.Errorf("diagnostics %v; want code %q", diags, tc.wantCode)
			}
		})
	}
}

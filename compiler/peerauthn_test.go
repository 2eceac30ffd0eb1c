package compiler

import (
	"sort"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// pa returns a PeerAuthentication document.
func pa(name, ns, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n---\n"
}

// inboundChains compiles policy for class and returns the inbound
// listener's filter chains as their transport protocols ("*" for a chain
// without a match).
func inboundChains(t *testing.T, policy string, class nodemeta.ProxyClass) []string {
	t.Helper()
	p, diags := Parse(splitObjects("case.yaml", []byte(policy)))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(class, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := snap.Resources.Resources[types.Listener].Items[inboundName].Resource.(*listenerv3.Listener)
	if len(l.GetListenerFilters()) != 1 || l.GetListenerFilters()[0].GetName() != "envoy.filters.listener.tls_inspector" {
		t.Errorf("listener filters = %v; want the TLS inspector", l.GetListenerFilters())
	}
	var out []string
	for _, fc := range l.GetFilterChains() {
		tp := fc.GetFilterChainMatch().GetTransportProtocol()
		if tp == "" {
			tp = "*"
		}
		out = append(out, tp)
	}
	return out
}

// TestPeerAuthenticationModes resolves the mode of reviews v1's app port
// 9080 as Istio's ComposePeerAuthentication does and checks the inbound
// chains it yields: STRICT [tls], PERMISSIVE [tls raw_buffer], DISABLE [*].
func TestPeerAuthenticationModes(t *testing.T) {
	strict, permissive, disable := "tls", "tls raw_buffer", "*"
	tests := []struct {
		name   string
		policy string
		want   string
	}{
		{"no policy is permissive", "", permissive},
		{"mesh strict", pa("mesh", "istio-system", "{mtls: {mode: STRICT}}"), strict},
		{"mesh unset is permissive", pa("mesh", "istio-system", "{}"), permissive},
		{"namespace overrides mesh", pa("mesh", "istio-system", "{mtls: {mode: STRICT}}") + pa("ns", "default", "{mtls: {mode: DISABLE}}"), disable},
		{"namespace unset inherits mesh", pa("mesh", "istio-system", "{mtls: {mode: STRICT}}") + pa("ns", "default", "{mtls: {mode: UNSET}}"), strict},
		{"other namespace does not apply", pa("ns", "prod", "{mtls: {mode: STRICT}}"), permissive},
		{"workload overrides namespace", pa("ns", "default", "{mtls: {mode: STRICT}}") + pa("wl", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}"), permissive},
		{"workload unset inherits namespace", pa("ns", "default", "{mtls: {mode: STRICT}}") + pa("wl", "default", "{selector: {matchLabels: {app: reviews}}}"), strict},
		{"selector not matching", pa("wl", "default", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT}}"), permissive},
		{"selector in another namespace", pa("wl", "prod", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"), permissive},
		{"selector in the root namespace is ignored", pa("wl", "istio-system", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"), permissive},
		{"port level on the app port", pa("wl", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: DISABLE}}}"), disable},
		{"port level on another port", pa("wl", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"), strict},
		{"port level unset inherits the workload", pa("ns", "default", "{mtls: {mode: DISABLE}}") + pa("wl", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: UNSET}}}"), strict},
		{"first namespace policy by name wins", pa("a", "default", "{mtls: {mode: STRICT}}") + pa("b", "default", "{mtls: {mode: DISABLE}}"), strict},
		{"v1beta1", strings.Replace(pa("ns", "default", "{mtls: {mode: STRICT}}"), "security.istio.io/v1", "security.istio.io/v1beta1", 1), strict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(inboundChains(t, tt.policy, reviewsClass), " ")
			if got != tt.want {
				t.Errorf("inbound chains = [%s]; want [%s]", got, tt.want)
			}
		})
	}
}

// TestInboundTLSChain checks the mTLS chain's DownstreamTlsContext and
// the XFCC settings of both chains (docs/xds-conventions.md).
func TestInboundTLSChain(t *testing.T) {
	p, _ := Parse(nil)
	snap, err := p.Compile(reviewsClass, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := snap.Resources.Resources[types.Listener].Items[inboundName].Resource.(*listenerv3.Listener)
	if len(l.GetFilterChains()) != 2 {
		t.Fatalf("want two chains, got %d", len(l.GetFilterChains()))
	}
	hcmOf := func(fc *listenerv3.FilterChain) *hcmv3.HttpConnectionManager {
		h := &hcmv3.HttpConnectionManager{}
		if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	tlsChain, plain := l.GetFilterChains()[0], l.GetFilterChains()[1]
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := tlsChain.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	common := ctx.GetCommonTlsContext()
	cv := common.GetCombinedValidationContext()
	switch {
	case !ctx.GetRequireClientCertificate().GetValue():
		t.Error("require_client_certificate is not set")
	case len(common.GetTlsCertificateSdsSecretConfigs()) != 1 || common.GetTlsCertificateSdsSecretConfigs()[0].GetName() != "default":
		t.Errorf("certificate secrets = %v; want [default]", common.GetTlsCertificateSdsSecretConfigs())
	case cv.GetValidationContextSdsSecretConfig().GetName() != "ROOTCA" || cv.GetValidationContextSdsSecretConfig().GetSdsConfig().GetAds() == nil:
		t.Errorf("validation secret = %v; want ROOTCA over ADS", cv.GetValidationContextSdsSecretConfig())
	case strings.Join(common.GetAlpnProtocols(), ",") != "h2,http/1.1":
		t.Errorf("alpn = %v", common.GetAlpnProtocols())
	}
	if h := hcmOf(tlsChain); h.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_APPEND_FORWARD ||
		!h.GetSetCurrentClientCertDetails().GetSubject().GetValue() || !h.GetSetCurrentClientCertDetails().GetUri() || !h.GetSetCurrentClientCertDetails().GetDns() {
		t.Errorf("mTLS chain XFCC: %v %v", h.GetForwardClientCertDetails(), h.GetSetCurrentClientCertDetails())
	}
	if h := hcmOf(plain); h.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_SANITIZE || h.GetSetCurrentClientCertDetails() != nil {
		t.Errorf("plain-text chain XFCC: %v %v", h.GetForwardClientCertDetails(), h.GetSetCurrentClientCertDetails())
	}
	if plain.GetTransportSocket() != nil {
		t.Error("plain-text chain has a transport socket")
	}
}

// TestGatewayInboundUnchanged: PeerAuthentication does not touch a
// gateway's listeners (Gateway servers' tls is their own).
func TestGatewayInboundUnchanged(t *testing.T) {
	p, diags := Parse(splitObjects("case.yaml", []byte(pa("mesh", "istio-system", "{mtls: {mode: STRICT}}")+httpbin+ingress("gw", "istio-system", "*"))))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	snap, err := p.Compile(gatewayClass, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range snap.Resources.Resources[types.Listener].Items {
		l := r.Resource.(*listenerv3.Listener)
		if len(l.GetListenerFilters()) != 0 || l.GetFilterChains()[0].GetTransportSocket() != nil {
			t.Errorf("gateway listener %s changed by PeerAuthentication: %v", name, l)
		}
	}
}

// TestPeerAuthenticationDiagnostics: Istio's validation of
// PeerAuthentication, and what istioctl analyze warns about, each at its
// field ("CODE severity field").
func TestPeerAuthenticationDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"valid", pa("a", "default", "{selector: {matchLabels: {app: x}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}"), nil},
		{"bad mode", pa("a", "default", "{mtls: {mode: STRIKT}}"), []string{"GM0102 error spec.mtls.mode"}},
		{"unknown field", pa("a", "default", "{mtl: {mode: STRICT}}"), []string{"GM0103 error spec.mtl"}},
		{"port level without selector", pa("a", "default", "{mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"), []string{"GM0114 error spec.portLevelMtls"}},
		{"port zero", pa("a", "default", "{selector: {matchLabels: {app: x}}, portLevelMtls: {0: {mode: DISABLE}}}"), []string{"GM0111 error spec.portLevelMtls.0"}},
		{"port not a number", pa("a", "default", "{selector: {matchLabels: {app: x}}, portLevelMtls: {http: {mode: DISABLE}}}"), []string{"GM0102 error spec.portLevelMtls.http"}},
		{"wildcard selector", pa("a", "default", "{selector: {matchLabels: {app: '*'}}}"), []string{"GM0102 error spec.selector.matchLabels.app"}},
		{"selector without labels", pa("a", "default", "{selector: {}, mtls: {mode: STRICT}}"), []string{"GM0110 warning spec.selector"}},
		{"two namespace policies", pa("a", "default", "{mtls: {mode: STRICT}}") + pa("b", "default", "{}"), []string{"GM0230 warning metadata.name"}},
		{"two mesh policies", pa("a", "istio-system", "{mtls: {mode: STRICT}}") + pa("b", "istio-system", "{}"), []string{"GM0230 warning metadata.name"}},
		{"two workload policies with one selector", pa("a", "default", "{selector: {matchLabels: {app: x}}}") + pa("b", "default", "{selector: {matchLabels: {app: x}}}"), []string{"GM0230 warning spec.selector"}},
		{"selector in the root namespace", pa("a", "istio-system", "{selector: {matchLabels: {app: x}}}"), []string{"GM0231 warning spec.selector"}},
		{"unsupported version", strings.Replace(pa("a", "default", "{}"), "security.istio.io/v1", "security.istio.io/v1alpha1", 1), []string{"GM0107 error apiVersion"}},
		{"an unknown security kind stays unsupported", "apiVersion: security.istio.io/v1\nkind: ExternalPolicy\nmetadata: {name: x}\nspec: {}\n", []string{"GM0108 error kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+string(d.Severity)+" "+d.Field)
				if d.Origin.File != "case.yaml" || d.Origin.Line <= 0 {
					t.Errorf("diagnostic without file:line: %s", d)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got diagnostics\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

package compiler

import (
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// These cases follow issue 12 (zero trust) as TestIstioAccepts and
// TestIstioFlags follow issue 9: PeerAuthentication and DestinationRule
// tls that Istio accepts validate and compile; what Istio's validation
// rejects is an error at its line ("CODE severity line").

// TestIstioAcceptsMTLS: each case is valid Istio; gitmesh reports what is
// listed (nothing, or a warning) and compiles it for a sidecar with an
// inbound listener and for an ingress gateway.
func TestIstioAcceptsMTLS(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"mesh-wide STRICT", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`, nil},
		{"namespace PERMISSIVE, workload STRICT with a port exception", `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: httpbin}
spec:
  selector:
    matchLabels: {app: httpbin}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
    9090: {}
`, nil},
		{"empty spec", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {}\n", nil},
		{"DestinationRule tls modes", httpbin + `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external}
spec:
  host: "*.example.com"
  trafficPolicy:
    tls: {mode: SIMPLE, sni: api.example.com}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: MUTUAL, clientCertificate: /etc/certs/client.pem, privateKey: /etc/certs/key.pem, caCertificates: /etc/certs/ca.pem, subjectAltNames: [api.example.com]}
  subsets:
  - name: legacy
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh}
spec:
  host: "*.svc.cluster.local"
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}, {number: 8443, name: tcp, protocol: TCP}]
  resolution: DNS
`, []string{"GM0113 error 48"}}, // protocol TLS is gitmesh's gap, not the tls settings
		{"two namespace-wide policies: the first wins", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b}
spec: {mtls: {mode: DISABLE}}
`, []string{"GM0230 warning 8"}},
	}
	class := nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Namespace: "default", Labels: map[string]string{"app": "httpbin"},
		Outbound: "127.0.0.1:15001", Inbound: "127.0.0.1:15006", App: "127.0.0.1:8080"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			if got := diagLines(diags); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
			for _, c := range []nodemeta.ProxyClass{class, gatewayClass} {
				snap, err := p.Compile(c, nil)
				if err != nil {
					t.Fatalf("compiling for %s: %v", c.Role, err)
				}
				if err := snap.Resources.Consistent(); err != nil {
					t.Errorf("compiling for %s: %v", c.Role, err)
				}
			}
		})
	}
}

// TestIstioFlagsMTLS: Istio's validation rejects each case (or istioctl
// analyze warns); gitmesh reports it at the offending line.
func TestIstioFlagsMTLS(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"portLevelMtls without a selector", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
`, []string{"GM0114 error 6"}},
		{"port 0", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin}
spec:
  selector:
    matchLabels: {app: httpbin}
  portLevelMtls:
    0: {mode: DISABLE}
`, []string{"GM0111 error 8"}},
		{"unknown mode", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls:
    mode: STRCT
`, []string{"GM0102 error 6"}},
		{"wildcard in the selector", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  selector:
    matchLabels:
      app: "*"
`, []string{"GM0102 error 7"}},
		{"MUTUAL without a client certificate", httpbin + `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mutual}
spec:
  host: "*.example.com"
  trafficPolicy:
    tls:
      mode: MUTUAL
      privateKey: /etc/certs/key.pem
`, []string{"GM0210 warning 23", "GM0110 error 25"}},
		{"credentialName on sidecars", httpbin + `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cred}
spec:
  host: "*.example.com"
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: httpbin-ca
`, []string{"GM0210 warning 23", "GM0104 error 27"}},
		{"insecureSkipVerify with subjectAltNames", httpbin + `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: insecure}
spec:
  host: "*.example.com"
  trafficPolicy:
    tls:
      mode: SIMPLE
      insecureSkipVerify: true
      subjectAltNames: [api.example.com]
`, []string{"GM0210 warning 23", "GM0114 error 27"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(tt.yaml)))
			if got := diagLines(diags); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

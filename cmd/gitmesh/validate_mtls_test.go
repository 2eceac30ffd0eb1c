package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidatePeerAuthentication runs `gitmesh validate` on sample
// PeerAuthentication and DestinationRule tls YAML: valid zero-trust policy
// passes, Istio's invalid forms fail at their file and line.
func TestValidatePeerAuthentication(t *testing.T) {
	good := t.TempDir()
	for name, content := range map[string]string{
		"mesh.yaml": "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n",
		"web.yaml": "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      app: web\n  portLevelMtls:\n    8080:\n      mode: PERMISSIVE\n" +
			"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: web\nspec:\n  hosts: [web]\n  location: MESH_INTERNAL\n  ports: [{number: 80, name: http, targetPort: 8080}]\n  resolution: STATIC\n  workloadSelector:\n    labels: {app: web}\n" +
			"---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: web\nspec:\n  host: web\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n",
	} {
		if err := os.WriteFile(filepath.Join(good, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad := t.TempDir()
	for name, content := range map[string]string{
		"ns.yaml": "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\nspec:\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n    8080:\n      mode: DISABLE\n",
		"dr.yaml": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: api\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls:\n      mode: MUTUAL\n      privateKey: /etc/certs/key.pem\n",
	} {
		if err := os.WriteFile(filepath.Join(bad, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []cliCase{
		{name: "zero-trust policy is valid", args: []string{good}, wantCode: 0, wantOut: "0 error(s)"},
		{name: "portLevelMtls without a selector", args: []string{bad}, wantCode: 1, wantOut: "ns.yaml:8: GM0114 error: PeerAuthentication default/default: spec.portLevelMtls"},
		{name: "MUTUAL without a client certificate", args: []string{bad}, wantCode: 1, wantOut: "dr.yaml:8: GM0110 error: DestinationRule default/api: spec.trafficPolicy.tls.clientCertificate"},
		{name: "github annotations", args: []string{bad, "-o", "github"}, wantCode: 1, wantOut: "::error file=ns.yaml,line=8,title=GM0114::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, append([]string{"validate"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code %d; want %d\n%s", code, tt.wantCode, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
		})
	}
}

package compiler

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/registry"
)

// meshSvc declares ratings in default (port 9080 http, 9090 grpc), in the
// mesh, on the connected sidecars labelled app=ratings.
const meshSvc = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http}, {number: 9090, name: grpc}]
  resolution: STATIC
  workloadSelector: {labels: {app: ratings}}
---
`

// ratingsFleet are two sidecars of ratings (service accounts ratings and
// the default) and a gateway.
var ratingsFleet = []nodemeta.Workload{
	{ID: "r1", Namespace: "default", Labels: map[string]string{"app": "ratings", "version": "v1"}, Inbound: "10.0.0.1:15006", App: "10.0.0.1:8080", ServiceAccount: "ratings"},
	{ID: "r2", Labels: map[string]string{"app": "ratings", "version": "v2"}, Inbound: "10.0.0.2:15006", App: "10.0.0.2:8080"},
	{ID: "gw", Role: nodemeta.RoleGateway, Labels: map[string]string{"app": "ratings"}, Gateway: []string{"10.0.0.9:80"}},
}

// ratingsDR is a DestinationRule for ratings with subset v1 and trafficPolicy tp.
func ratingsDR(tp string) string {
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings\n  trafficPolicy: " + tp + "\n  subsets: [{name: v1, labels: {version: v1}}]\n---\n"
}

// compiledCluster compiles policy for class and fleet, and returns
// cluster name and its ClusterLoadAssignment (nil when none).
func compiledCluster(t *testing.T, policy string, class nodemeta.ProxyClass, fleet []nodemeta.Workload, name string, opts ...Option) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	t.Helper()
	p, diags := Parse(splitObjects("case.yaml", []byte(policy)), opts...)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(class, fleet)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Resources.Consistent(); err != nil {
		t.Fatal(err)
	}
	r, ok := snap.Resources.Resources[types.Cluster].Items[name]
	if !ok {
		t.Fatalf("no cluster %s", name)
	}
	var cla *endpointv3.ClusterLoadAssignment
	if e, ok := snap.Resources.Resources[types.Endpoint].Items[name]; ok {
		cla = e.Resource.(*endpointv3.ClusterLoadAssignment)
	}
	return r.Resource.(*clusterv3.Cluster), cla
}

// describeTLS summarizes a cluster's TLS: "auto" (the two transport socket
// matches), "none", or the UpstreamTlsContext's mode-defining parts.
func describeTLS(t *testing.T, c *clusterv3.Cluster) string {
	t.Helper()
	ts := c.GetTransportSocket()
	if m := c.GetTransportSocketMatches(); len(m) > 0 {
		if len(m) != 2 || m[0].GetName() != "tlsMode-istio" || m[0].GetMatch().GetFields()["tlsMode"].GetStringValue() != "istio" ||
			m[1].GetName() != "tlsMode-disabled" || len(m[1].GetMatch().GetFields()) != 0 || m[1].GetTransportSocket().GetName() != "envoy.transport_sockets.raw_buffer" {
			t.Errorf("transport_socket_matches = %v", m)
		}
		if ts != nil {
			t.Error("both transport_socket and transport_socket_matches")
		}
		return "auto " + describeSocket(t, m[0].GetTransportSocket().GetTypedConfig().GetValue())
	}
	if ts == nil {
		return "none"
	}
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Errorf("transport socket %s", ts.GetName())
	}
	return describeSocket(t, ts.GetTypedConfig().GetValue())
}

// describeSocket summarizes an UpstreamTlsContext: "istio" (SDS default
// and ROOTCA) or "files", then sni=, sans= and alpn=.
func describeSocket(t *testing.T, b []byte) string {
	t.Helper()
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := proto.Unmarshal(b, ctx); err != nil {
		t.Fatal(err)
	}
	common := ctx.GetCommonTlsContext()
	var parts []string
	var sans []*tlsv3.SubjectAltNameMatcher
	if cv := common.GetCombinedValidationContext(); cv != nil {
		if len(common.GetTlsCertificateSdsSecretConfigs()) != 1 || common.GetTlsCertificateSdsSecretConfigs()[0].GetName() != "default" || cv.GetValidationContextSdsSecretConfig().GetName() != "ROOTCA" {
			t.Errorf("ISTIO_MUTUAL secrets: %v", common)
		}
		parts = append(parts, "istio")
		sans = cv.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	} else {
		parts = append(parts, "files")
		for _, c := range common.GetTlsCertificates() {
			parts = append(parts, "cert="+c.GetCertificateChain().GetFilename(), "key="+c.GetPrivateKey().GetFilename())
		}
		if vc := common.GetValidationContext(); vc != nil {
			parts = append(parts, "ca="+vc.GetTrustedCa().GetFilename())
			sans = vc.GetMatchTypedSubjectAltNames()
		}
	}
	parts = append(parts, "sni="+ctx.GetSni())
	for _, s := range sans {
		parts = append(parts, "san="+s.GetSanType().String()+":"+s.GetMatcher().GetExact())
	}
	if len(common.GetAlpnProtocols()) > 0 {
		parts = append(parts, "alpn="+strings.Join(common.GetAlpnProtocols(), ","))
	}
	return strings.Join(parts, " ")
}

func TestClusterTLS(t *testing.T) {
	const (
		sans    = "san=URI:spiffe://cluster.local/ns/default/sa/default san=URI:spiffe://cluster.local/ns/default/sa/ratings"
		alpn    = "alpn=istio-peer-exchange,istio"
		auto    = "auto istio sni=outbound_.9080_._.ratings.default.svc.cluster.local " + sans + " " + alpn
		autoV1  = "auto istio sni=outbound_.9080_.v1_.ratings.default.svc.cluster.local " + sans + " " + alpn
		all     = "outbound|9080||ratings.default.svc.cluster.local"
		v1      = "outbound|9080|v1|ratings.default.svc.cluster.local"
		grpcAll = "outbound|9090||ratings.default.svc.cluster.local"
	)
	sidecar := nodemeta.SidecarClass("default", "")
	tests := []struct {
		name    string
		policy  string
		class   nodemeta.ProxyClass
		cluster string
		opts    []Option
		want    string
	}{
		{name: "auto mTLS", policy: meshSvc, cluster: all, want: auto},
		{name: "auto mTLS on a subset", policy: meshSvc + ratingsDR("{}"), cluster: v1, want: autoV1},
		{name: "auto mTLS from a gateway", policy: meshSvc, class: gatewayClass, cluster: all, want: auto},
		{name: "trust domain", policy: meshSvc, cluster: all, opts: []Option{WithTrustDomain("example.org")},
			want: "auto istio sni=outbound_.9080_._.ratings.default.svc.cluster.local san=URI:spiffe://example.org/ns/default/sa/default san=URI:spiffe://example.org/ns/default/sa/ratings " + alpn},
		{name: "auto mTLS off", policy: meshSvc, cluster: all, opts: []Option{WithAutoMTLS(false)}, want: "none"},
		{name: "mesh external", policy: strings.Replace(meshSvc, "MESH_INTERNAL", "MESH_EXTERNAL", 1), cluster: all, want: "none"},
		{name: "location unset is external", policy: strings.Replace(meshSvc, "  location: MESH_INTERNAL\n", "", 1), cluster: all, want: "none"},
		{name: "namespace DISABLE", policy: meshSvc + pa("ns", "default", "{mtls: {mode: DISABLE}}"), cluster: all, want: "none"},
		{name: "mesh DISABLE", policy: meshSvc + pa("mesh", "istio-system", "{mtls: {mode: DISABLE}}"), cluster: all, want: "none"},
		{name: "workload DISABLE keeps auto", policy: meshSvc + pa("wl", "default", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}"), cluster: all, want: auto},
		{name: "proxyless gRPC", policy: meshSvc, class: nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Generator: nodemeta.GeneratorGRPC, Namespace: "default"}, cluster: all, want: "none"},
		{name: "DR DISABLE", policy: meshSvc + ratingsDR("{tls: {mode: DISABLE}}"), cluster: all, want: "none"},
		{name: "DR ISTIO_MUTUAL", policy: meshSvc + ratingsDR("{tls: {mode: ISTIO_MUTUAL}}"), cluster: all,
			want: "istio sni=outbound_.9080_._.ratings.default.svc.cluster.local " + sans + " " + alpn},
		{name: "DR ISTIO_MUTUAL on an external service", policy: strings.Replace(meshSvc, "MESH_INTERNAL", "MESH_EXTERNAL", 1) + ratingsDR("{tls: {mode: ISTIO_MUTUAL}}"), cluster: all,
			want: "istio sni=outbound_.9080_._.ratings.default.svc.cluster.local " + sans + " " + alpn},
		{name: "DR ISTIO_MUTUAL with sni and SANs", policy: meshSvc + ratingsDR("{tls: {mode: ISTIO_MUTUAL, sni: r.example, subjectAltNames: ['spiffe://td/ns/a/sa/b']}}"), cluster: all,
			want: "istio sni=r.example san=URI:spiffe://td/ns/a/sa/b " + alpn},
		{name: "DR SIMPLE", policy: meshSvc + ratingsDR("{tls: {mode: SIMPLE, sni: ratings.example, subjectAltNames: [ratings.example, 10.1.1.1]}}"), cluster: all,
			want: "files ca=/etc/ssl/certs/ca-certificates.crt sni=ratings.example san=DNS:ratings.example san=IP_ADDRESS:10.1.1.1"},
		{name: "DR SIMPLE insecure", policy: meshSvc + ratingsDR("{tls: {mode: SIMPLE, insecureSkipVerify: true}}"), cluster: all, want: "files sni="},
		{name: "DR SIMPLE on gRPC", policy: meshSvc + ratingsDR("{tls: {mode: SIMPLE, caCertificates: /ca.pem}}"), cluster: grpcAll, want: "files ca=/ca.pem sni= alpn=h2"},
		{name: "DR MUTUAL", policy: meshSvc + ratingsDR("{tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}}"), cluster: all,
			want: "files cert=/c.pem key=/k.pem ca=/ca.pem sni="},
		{name: "port level replaces", policy: meshSvc + ratingsDR("{tls: {mode: DISABLE}, portLevelSettings: [{port: {number: 9080}, tls: {mode: ISTIO_MUTUAL}}]}"), cluster: all,
			want: "istio sni=outbound_.9080_._.ratings.default.svc.cluster.local " + sans + " " + alpn},
		{name: "port level without tls falls back to auto", policy: meshSvc + ratingsDR("{tls: {mode: DISABLE}, portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: RANDOM}}]}"), cluster: all, want: auto},
		{name: "other port keeps the top level", policy: meshSvc + ratingsDR("{tls: {mode: DISABLE}, portLevelSettings: [{port: {number: 9090}, tls: {mode: ISTIO_MUTUAL}}]}"), cluster: all, want: "none"},
		{name: "subset overrides", policy: meshSvc + strings.Replace(ratingsDR("{tls: {mode: DISABLE}}"), "labels: {version: v1}}", "labels: {version: v1}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}", 1), cluster: v1,
			want: "istio sni=outbound_.9080_.v1_.ratings.default.svc.cluster.local " + sans + " " + alpn},
		{name: "subset inherits", policy: meshSvc + ratingsDR("{tls: {mode: DISABLE}}"), cluster: v1, want: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class := tt.class
			if class.Role == "" {
				class = sidecar
			}
			c, _ := compiledCluster(t, tt.policy, class, ratingsFleet, tt.cluster, tt.opts...)
			if got := describeTLS(t, c); got != tt.want {
				t.Errorf("tls:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// meshedAddresses returns the addresses of cla's endpoints that carry
// envoy.transport_socket_match {tlsMode: istio}, and checks the others
// carry none.
func meshedAddresses(t *testing.T, cla *endpointv3.ClusterLoadAssignment) []string {
	t.Helper()
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, ep := range loc.GetLbEndpoints() {
			md, ok := ep.GetMetadata().GetFilterMetadata()["envoy.transport_socket_match"]
			if !ok {
				continue
			}
			if md.GetFields()["tlsMode"].GetStringValue() != "istio" || len(md.GetFields()) != 1 {
				t.Errorf("transport socket match metadata = %v", md)
			}
			out = append(out, ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

func TestMeshedEndpoints(t *testing.T) {
	const entries = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.internal]
  location: MESH_INTERNAL
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, labels: {security.istio.io/tlsMode: istio, app: db}, serviceAccount: db}
  - {address: 10.1.0.2, labels: {app: db}}
  - {address: 10.1.0.3, labels: {security.istio.io/tlsMode: disabled}}
---
`
	sidecar := nodemeta.SidecarClass("default", "")
	tests := []struct {
		name    string
		policy  string
		fleet   []nodemeta.Workload
		cluster string
		want    string
		wantSAN string
	}{
		{name: "connected sidecars", policy: meshSvc, fleet: ratingsFleet, cluster: "outbound|9080||ratings.default.svc.cluster.local", want: "10.0.0.1 10.0.0.2"},
		{name: "workload DISABLE on the app port", policy: meshSvc + pa("wl", "default", "{selector: {matchLabels: {version: v2}}, portLevelMtls: {8080: {mode: DISABLE}}}"),
			fleet: ratingsFleet, cluster: "outbound|9080||ratings.default.svc.cluster.local", want: "10.0.0.1"},
		{name: "workload DISABLE on another port", policy: meshSvc + pa("wl", "default", "{selector: {matchLabels: {version: v2}}, portLevelMtls: {9080: {mode: DISABLE}}}"),
			fleet: ratingsFleet, cluster: "outbound|9080||ratings.default.svc.cluster.local", want: "10.0.0.1 10.0.0.2"},
		{name: "tlsMode label", policy: entries, cluster: "outbound|5432||db.example.internal", want: "10.1.0.1",
			wantSAN: "spiffe://cluster.local/ns/default/sa/db"},
		{name: "tlsMode label with workload DISABLE", policy: entries + pa("wl", "default", "{selector: {matchLabels: {app: db}}, mtls: {mode: DISABLE}}"),
			cluster: "outbound|5432||db.example.internal", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cla := compiledCluster(t, tt.policy, sidecar, tt.fleet, tt.cluster)
			if got := strings.Join(meshedAddresses(t, cla), " "); got != tt.want {
				t.Errorf("meshed endpoints [%s]; want [%s]", got, tt.want)
			}
			if tt.wantSAN != "" && !strings.Contains(describeTLS(t, c), "san=URI:"+tt.wantSAN) {
				t.Errorf("SANs of %s lack %s", describeTLS(t, c), tt.wantSAN)
			}
		})
	}
}

// TestMeshedRegistryPods: a Kubernetes Service's endpoints (EndpointSlice
// instances) are meshed when a connected sidecar captures their pod's
// traffic, or when their pod carries Istio's tlsMode label; the pods'
// service accounts are the SANs.
func TestMeshedRegistryPods(t *testing.T) {
	svc := &registry.Service{
		Name: "web", Namespace: "default", Hostname: "web.default.svc.cluster.local",
		Selector: map[string]string{"app": "web"},
		Ports:    []registry.Port{{Name: "http", Number: 80, Protocol: registry.ProtocolHTTP, TargetPort: 8080}},
		Endpoints: []registry.Endpoint{
			{Address: "10.2.0.1", Ports: map[string]uint32{"http": 8080}, Ready: true, Workload: "web-1", ServiceAccount: "web", Labels: map[string]string{"app": "web"}},
			{Address: "10.2.0.2", Ports: map[string]uint32{"http": 8080}, Ready: true, Workload: "web-2", ServiceAccount: "web", Labels: map[string]string{"app": "web"}},
			{Address: "10.2.0.3", Ports: map[string]uint32{"http": 8080}, Ready: true, Workload: "web-3", Labels: map[string]string{"app": "web", "security.istio.io/tlsMode": "istio"}},
			{Address: "10.2.0.4", Ports: map[string]uint32{"http": 8080}, Ready: true, Workload: "web-4", ServiceAccount: "legacy", Labels: map[string]string{"app": "web"}},
		},
	}
	fleet := []nodemeta.Workload{
		{ID: "web-1.default", Namespace: "default", Pod: "web-1", Interception: nodemeta.InterceptionRedirect, Labels: map[string]string{"app": "web"}, Inbound: "10.2.0.1:15006", App: "10.2.0.1:8080"},
		{ID: "web-2.default", Namespace: "default", Pod: "web-2", Labels: map[string]string{"app": "web"}, Inbound: "10.2.0.2:15006", App: "10.2.0.2:8080"}, // not capturing
	}
	reg := registry.NewStatic([]*registry.Service{svc}, nil)
	c, cla := compiledCluster(t, "", nodemeta.SidecarClass("default", ""), fleet, "outbound|80||web.default.svc.cluster.local", WithRegistry(reg))
	if got := strings.Join(meshedAddresses(t, cla), " "); got != "10.2.0.1 10.2.0.3" {
		t.Errorf("meshed endpoints [%s]; want [10.2.0.1 10.2.0.3]", got)
	}
	wantSANs := "san=URI:spiffe://cluster.local/ns/default/sa/legacy san=URI:spiffe://cluster.local/ns/default/sa/web"
	if got := describeTLS(t, c); !strings.Contains(got, wantSANs) {
		t.Errorf("tls %s; want SANs %s", got, wantSANs)
	}
}

// TestClientTLSDiagnostics: Istio's validation of DestinationRule tls.
func TestClientTLSDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		tp   string
		want []string
	}{
		{"valid mutual", "{tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}", nil},
		{"mutual without files", "{tls: {mode: MUTUAL}}", []string{"GM0110 error spec.trafficPolicy.tls.clientCertificate", "GM0110 error spec.trafficPolicy.tls.privateKey"}},
		{"port-level mutual without key", "{portLevelSettings: [{port: {number: 9080}, tls: {mode: MUTUAL, clientCertificate: /c}}]}", []string{"GM0110 error spec.trafficPolicy.portLevelSettings[0].tls.privateKey"}},
		{"credentialName", "{tls: {mode: SIMPLE, credentialName: ratings-cred}}", []string{"GM0104 error spec.trafficPolicy.tls.credentialName"}},
		{"insecure with a CA", "{tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca}}", []string{"GM0114 error spec.trafficPolicy.tls.insecureSkipVerify"}},
		{"bad mode", "{tls: {mode: MUTAL}}", []string{"GM0102 error spec.trafficPolicy.tls.mode"}},
		{"unsupported field", "{tls: {mode: SIMPLE, caCrl: /crl}}", []string{"GM0104 error spec.trafficPolicy.tls.caCrl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(splitObjects("case.yaml", []byte(meshSvc+ratingsDR(tt.tp))))
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+string(d.Severity)+" "+d.Field)
				if d.Origin.Line <= 0 {
					t.Errorf("diagnostic without a line: %s", d)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got diagnostics\n%s\nwant\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

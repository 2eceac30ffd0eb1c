package xds

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// secretsFor builds a node's "default" and "ROOTCA" secrets whose bytes
// name the node, so a test sees whose secrets it got.
func secretsFor(id, gen string) []*tlsv3.Secret {
	return []*tlsv3.Secret{
		{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("cert of " + id + " " + gen)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("key of " + id + " " + gen)}},
		}}},
		{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("roots " + gen)}},
		}}},
	}
}

// decodeSecrets returns the secrets of a response by name.
func decodeSecrets(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, a := range resp.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out[s.GetName()] = &s
	}
	return out
}

func chainOf(s *tlsv3.Secret) string {
	return string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
}

// TestSecretsPerNode: two nodes on ADS each receive their own secrets,
// by name, and never the other's; a rotation reaches the node on the open
// stream and its ACK shows in the status, not in the config state.
func TestSecretsPerNode(t *testing.T) {
	s, addr := startServer(t)
	ctx := context.Background()

	a := connectADS(t, addr, workload("a").Node())
	a.subscribeSidecar(t, "c1")
	a.subscribe(t, resource.SecretType, "default", "ROOTCA")
	b := connectADS(t, addr, workload("b").Node())
	b.subscribe(t, resource.SecretType, "default")
	waitNode(t, s, "b", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })
	waitNode(t, s, "a", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })

	if _, err := s.SetSecrets(ctx, "nobody", secretsFor("nobody", "1")); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("SetSecrets(unknown node) = %v; want ErrUnknownNode", err)
	}
	va, err := s.SetSecrets(ctx, "a", secretsFor("a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	vb, err := s.SetSecrets(ctx, "b", secretsFor("b", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if va == vb {
		t.Fatalf("versions of different secrets are equal: %s", va)
	}

	resp := a.recv(t)
	if resp.GetTypeUrl() != resource.SecretType || resp.GetVersionInfo() != va {
		t.Fatalf("node a got %s version %s; want secrets version %s", resp.GetTypeUrl(), resp.GetVersionInfo(), va)
	}
	got := decodeSecrets(t, resp)
	if len(got) != 2 || chainOf(got["default"]) != "cert of a 1" || got["ROOTCA"] == nil {
		t.Fatalf("node a got %v; want its default and ROOTCA", got)
	}
	a.ack(t, resp)

	resp = b.recv(t)
	got = decodeSecrets(t, resp)
	if len(got) != 1 || chainOf(got["default"]) != "cert of b 1" {
		t.Fatalf("node b got %v; want only its own default (it subscribed to default only)", got)
	}
	b.ack(t, resp)

	st := waitNode(t, s, "a", "secrets ACKed", func(st NodeStatus, ok bool) bool { return st.Secrets.Acked == va })
	if !slices.Equal(st.Secrets.Names, []string{"ROOTCA", "default"}) || st.Secrets.Version != va {
		t.Fatalf("secrets status %+v; want names ROOTCA, default at %s", st.Secrets, va)
	}
	if _, ok := st.Types[resource.SecretType]; ok {
		t.Fatalf("secret type in the config types: %+v", st.Types)
	}
	if st.State != StateStale || st.NACK != nil {
		t.Fatalf("config state %s NACK %v; want STALE without NACK (no config assigned)", st.State, st.NACK)
	}

	// Rotation: a new version on the open stream.
	va2, err := s.SetSecrets(ctx, "a", secretsFor("a", "2"))
	if err != nil {
		t.Fatal(err)
	}
	resp = a.recv(t)
	if got := decodeSecrets(t, resp); resp.GetVersionInfo() != va2 || chainOf(got["default"]) != "cert of a 2" {
		t.Fatalf("after rotation node a got version %s %v; want %s with the new cert", resp.GetVersionInfo(), got, va2)
	}
	a.ack(t, resp)
	waitNode(t, s, "a", "new secrets ACKed", func(st NodeStatus, ok bool) bool { return st.Secrets.Acked == va2 })
	select {
	case resp := <-b.resps:
		t.Fatalf("node b got %s %v after node a's rotation", resp.GetTypeUrl(), decodeSecrets(t, resp))
	default:
	}
}

// TestSecretNACKIsNotAConfigNACK: a node rejecting its secrets is counted
// and shown in its secrets status; its config stays SYNCED.
func TestSecretNACKIsNotAConfigNACK(t *testing.T) {
	s, addr := startServer(t)
	ctx := context.Background()
	c := connectADS(t, addr, workload("n").Node())
	c.subscribeSidecar(t, "c1")
	waitNode(t, s, "n", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })
	label, snap := sidecar(t, "c1", 10000, 8080)
	if err := s.SetSnapshot(ctx, "n", label, snap); err != nil {
		t.Fatal(err)
	}
	c.recvAndAck(t, 4)
	waitState(t, s, "n", StateSynced, label)

	c.subscribe(t, resource.SecretType, "default")
	v, err := s.SetSecrets(ctx, "n", secretsFor("n", "1"))
	if err != nil {
		t.Fatal(err)
	}
	resp := c.recv(t)
	c.nack(t, resp, "bad key")
	st := waitNode(t, s, "n", "secrets NACKed", func(st NodeStatus, ok bool) bool { return st.Secrets.Nacked == v })
	if st.Secrets.Error != "bad key" || st.State != StateSynced || st.NACK != nil || st.Acked != label {
		t.Fatalf("status %+v; want the secret NACK in Secrets and the config SYNCED", st)
	}
	var m dto.Metric
	if err := s.metrics.nacks.WithLabelValues(strings.TrimPrefix(resource.SecretType, resource.APITypePrefix)).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Fatalf("secret NACKs counted %v; want 1", n)
	}
}

// TestSecretsFollowAdmittedID: the secrets a stream gets are those of the
// id admission bound it to, not of the id the client announced.
func TestSecretsFollowAdmittedID(t *testing.T) {
	s, addr := startServer(t, WithAdmission(func(_ context.Context, w nodemeta.Workload) (nodemeta.Workload, error) {
		w.ID = "bound-" + w.ID
		return w, nil
	}))
	ctx := context.Background()
	victim := connectADS(t, addr, workload("victim").Node())
	victim.subscribe(t, resource.SecretType, "default")
	waitNode(t, s, "bound-victim", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })
	// A client announcing "bound-victim" is bound to "bound-bound-victim".
	liar := connectADS(t, addr, workload("bound-victim").Node())
	liar.subscribe(t, resource.SecretType, "default")
	waitNode(t, s, "bound-bound-victim", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })

	if _, err := s.SetSecrets(ctx, "bound-victim", secretsFor("victim", "1")); err != nil {
		t.Fatal(err)
	}
	if got := decodeSecrets(t, victim.recv(t)); chainOf(got["default"]) != "cert of victim 1" {
		t.Fatalf("victim got %v", got)
	}
	if _, err := s.SetSecrets(ctx, "bound-bound-victim", secretsFor("liar", "1")); err != nil {
		t.Fatal(err)
	}
	if got := decodeSecrets(t, liar.recv(t)); chainOf(got["default"]) != "cert of liar 1" {
		t.Fatalf("liar got %v; want its own secrets", got)
	}
}

// TestSecretsStandaloneSDS: the SDS service (not ADS) serves the same
// per-node secrets.
func TestSecretsStandaloneSDS(t *testing.T) {
	s, addr := startServer(t)
	stream, r := openStream(t, addr, func(ctx context.Context, _ discoveryv3.AggregatedDiscoveryServiceClient) (secretservice.SecretDiscoveryService_StreamSecretsClient, error) {
		return secretservice.NewSecretDiscoveryServiceClient(dial(t, addr)).StreamSecrets(ctx)
	})
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: workload("sds").Node(), TypeUrl: resource.SecretType, ResourceNames: []string{"ROOTCA"}}); err != nil {
		t.Fatal(err)
	}
	waitNode(t, s, "sds", "connected", func(st NodeStatus, ok bool) bool { return ok && st.Connected })
	v, err := s.SetSecrets(context.Background(), "sds", secretsFor("sds", "1"))
	if err != nil {
		t.Fatal(err)
	}
	resp := r.recv(t)
	if got := decodeSecrets(t, resp); resp.GetVersionInfo() != v || len(got) != 1 || got["ROOTCA"] == nil {
		t.Fatalf("SDS answered %s %v; want ROOTCA at %s", resp.GetVersionInfo(), got, v)
	}
}

func TestSetSecretsRefuses(t *testing.T) {
	s := NewServer()
	for _, tc := range []struct {
		name    string
		secrets []*tlsv3.Secret
		want    string
	}{
		{"unnamed", []*tlsv3.Secret{{}}, "no name"},
		{"twice", []*tlsv3.Secret{{Name: "default"}, {Name: "default"}}, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.SetSecrets(context.Background(), "n", tc.secrets); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetSecrets = %v; want an error with %q", err, tc.want)
			}
		})
	}
}

package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
)

// startController starts a controller on loopback and returns it with a
// function that stops it (the test's cleanup calls it too). Unset fields
// default to: RepoURL an empty local directory (fetches fail; these tests
// look at the CA and the listeners), StateDir a temporary directory,
// XDSAddr a free loopback port. The admin API always listens on one.
func startController(t *testing.T, cfg Config) (*Controller, func()) {
	t.Helper()
	if cfg.RepoURL == "" {
		cfg.RepoURL = t.TempDir()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.XDSAddr == "" {
		cfg.XDSAddr = "127.0.0.1:0"
	}
	cfg.AdminAddr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := c.Wait(); err != nil {
			t.Errorf("Wait = %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// caCall calls the CA admin API; op "" is a GET of the status.
func caCall(t *testing.T, c *Controller, op string, force bool, wantCode int, v any) {
	t.Helper()
	var req *http.Request
	var err error
	if op == "" {
		req, err = http.NewRequest(http.MethodGet, "http://"+c.AdminAddr+"/api/v1/ca", nil)
	} else {
		body, _ := json.Marshal(admin.CARequest{Op: op, Force: force})
		req, err = http.NewRequest(http.MethodPost, "http://"+c.AdminAddr+"/api/v1/ca", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantCode {
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("%s /api/v1/ca %q: %d %v; want %d", req.Method, op, resp.StatusCode, e, wantCode)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCARootPersists: the generated root survives a restart, and so do a
// rotation and a prune made through the admin API.
func TestCARootPersists(t *testing.T) {
	cfg := Config{StateDir: t.TempDir()}
	c, stop := startController(t, cfg)
	var first admin.CAStatus
	caCall(t, c, "", false, http.StatusOK, &first)
	if first.TrustDomain != "cluster.local" || first.TrustedRoots != 1 || first.OperatorSupplied || len(first.RootFingerprint) != 64 {
		t.Fatalf("status %+v; want a generated cluster.local root", first)
	}
	if fi, err := os.Stat(filepath.Join(cfg.StateDir, "ca", ca.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v, %v; want mode 0600", fi, err)
	}
	caCall(t, c, admin.CAOpPrune, false, http.StatusConflict, nil)
	var rotated admin.CAResponse
	caCall(t, c, admin.CAOpRotate, false, http.StatusOK, &rotated)
	if rotated.Status.RootFingerprint == first.RootFingerprint || rotated.Status.TrustedRoots != 2 {
		t.Fatalf("after rotate %+v; want a new root with the old one trusted", rotated.Status)
	}
	st := c.Reconciler.Status()
	if st.CA == nil || st.CA.RootFingerprint != rotated.Status.RootFingerprint {
		t.Fatalf("status CA %+v; want the rotated root", st.CA)
	}
	stop()

	c, stop = startController(t, cfg)
	var again admin.CAStatus
	caCall(t, c, "", false, http.StatusOK, &again)
	if again.RootFingerprint != rotated.Status.RootFingerprint || again.TrustedRoots != 2 {
		t.Fatalf("after restart %+v; want the rotated root and 2 trusted roots", again)
	}
	caCall(t, c, admin.CAOpPrune, false, http.StatusOK, nil)
	stop()

	c, _ = startController(t, cfg)
	caCall(t, c, "", false, http.StatusOK, &again)
	if again.RootFingerprint != rotated.Status.RootFingerprint || again.TrustedRoots != 1 {
		t.Fatalf("after prune and restart %+v; want the rotated root alone", again)
	}
}

// TestCAOperatorRoot: --ca-cert/--ca-key (with --ca-trusted-roots) are
// used as given and never rotated.
func TestCAOperatorRoot(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old, err := ca.NewRoot("example.org", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := ca.NewRoot("example.org", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := Config{StateDir: t.TempDir(), CA: CAConfig{TrustDomain: "example.org",
		CertFile: write("cert.pem", cur.CertPEM), KeyFile: write("key.pem", cur.KeyPEM), TrustedRootsFile: write("old.pem", old.CertPEM)}}
	c, _ := startController(t, cfg)
	var st admin.CAStatus
	caCall(t, c, "", false, http.StatusOK, &st)
	if !st.OperatorSupplied || st.TrustDomain != "example.org" || st.TrustedRoots != 2 {
		t.Fatalf("status %+v; want the operator's root with the old one trusted", st)
	}
	caCall(t, c, admin.CAOpRotate, false, http.StatusConflict, nil)
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "ca")); !os.IsNotExist(err) {
		t.Fatalf("a root was generated in the state dir (%v) although the operator supplied one", err)
	}
}

func TestCAConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ca   CAConfig
	}{
		{"cert without key", CAConfig{CertFile: "x.pem"}},
		{"trusted roots without cert", CAConfig{TrustedRootsFile: "x.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), Config{RepoURL: t.TempDir(), StateDir: t.TempDir(),
				XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", CA: tc.ca})
			if err == nil {
				t.Fatal("Start accepted the CA configuration")
			}
		})
	}
}

// TestControllerServesSecrets: a proxy connecting to the controller's xDS
// address receives its certificate and the root over SDS; the root is the
// one the CA status reports.
func TestControllerServesSecrets(t *testing.T) {
	c, _ := startController(t, Config{StateDir: t.TempDir()})
	conn, err := grpc.NewClient(c.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := nodemeta.Workload{ID: "cart-1", Service: "cart", Namespace: "shop", ServiceAccount: "cart", Role: nodemeta.RoleSidecar, Outbound: "127.0.0.1:15001"}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: w.Node(), TypeUrl: resource.SecretType, ResourceNames: []string{"default", "ROOTCA"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]*tlsv3.Secret{}
	for _, a := range resp.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		secrets[s.GetName()] = &s
	}
	chain := secrets["default"].GetTlsCertificate().GetCertificateChain().GetInlineBytes()
	bundle := secrets["ROOTCA"].GetValidationContext().GetTrustedCa().GetInlineBytes()
	blk, _ := pem.Decode(chain)
	rootBlk, _ := pem.Decode(bundle)
	if blk == nil || rootBlk == nil {
		t.Fatalf("secrets %v; want default and ROOTCA with PEM", secrets)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("leaf URIs %v; want the node's SPIFFE id", leaf.URIs)
	}
	sum := sha256.Sum256(rootBlk.Bytes)
	if st := c.CA.Status(); st.RootFingerprint != hex.EncodeToString(sum[:]) {
		t.Fatalf("ROOTCA root %x; status reports %s", sum, st.RootFingerprint)
	}

	resp2, err := http.Get("http://" + c.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	body, err := io.ReadAll(resp2.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"gitmesh_ca_certificates_issued_total 1",
		`gitmesh_ca_certificate_expiry_timestamp_seconds{node="cart-1",spiffe_id="spiffe://cluster.local/ns/shop/sa/cart"}`,
		"gitmesh_ca_root_expiry_timestamp_seconds",
		"gitmesh_ca_trusted_roots 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

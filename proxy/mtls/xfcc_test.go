package mtls_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

func TestXFCCModes(t *testing.T) {
	ca := prototest.NewCA(t, "root")
	chain, key := ca.Workload(t, prototest.SPIFFEID("sleep"))
	leaf := prototest.KeyPair(t, chain, key)
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Leaf}}
	sum := sha256.Sum256(leaf.Certificate[0])
	hash := hex.EncodeToString(sum[:])
	local := func() []string { return []string{prototest.SPIFFEID("productpage")} }
	mine := "By=" + prototest.SPIFFEID("productpage") + ";Hash=" + hash + `;Subject="";URI=` + prototest.SPIFFEID("sleep")
	all := mtls.XFCCConfig{Subject: true, URI: true, DNS: true}
	tests := []struct {
		name  string
		mode  hcmv3.HttpConnectionManager_ForwardClientCertDetails
		cs    *tls.ConnectionState
		prior string
		want  string
	}{
		{"sanitize removes", hcmv3.HttpConnectionManager_SANITIZE, cs, "By=x", ""},
		{"forward only keeps on mTLS", hcmv3.HttpConnectionManager_FORWARD_ONLY, cs, "By=x", "By=x"},
		{"forward only sanitizes plaintext", hcmv3.HttpConnectionManager_FORWARD_ONLY, nil, "By=x", ""},
		{"append forward appends", hcmv3.HttpConnectionManager_APPEND_FORWARD, cs, "By=x", "By=x," + mine},
		{"append forward without prior", hcmv3.HttpConnectionManager_APPEND_FORWARD, cs, "", mine},
		{"append forward sanitizes plaintext", hcmv3.HttpConnectionManager_APPEND_FORWARD, nil, "By=x", ""},
		{"sanitize set replaces", hcmv3.HttpConnectionManager_SANITIZE_SET, cs, "By=x", mine},
		{"always forward keeps plaintext", hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY, nil, "By=x", "By=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.prior != "" {
				h.Set(mtls.XFCCHeader, tt.prior)
			}
			x := all
			x.Mode = tt.mode
			x.Apply(h, tt.cs, local)
			if got := h.Get(mtls.XFCCHeader); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
	t.Run("only By and Hash without details", func(t *testing.T) {
		h := http.Header{}
		mtls.XFCCConfig{Mode: hcmv3.HttpConnectionManager_SANITIZE_SET}.Apply(h, cs, local)
		if got, want := h.Get(mtls.XFCCHeader), "By="+prototest.SPIFFEID("productpage")+";Hash="+hash; got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	})
}

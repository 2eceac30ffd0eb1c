package mtls

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// XFCCHeader is Envoy's x-forwarded-client-cert.
const XFCCHeader = "X-Forwarded-Client-Cert"

// XFCCConfig is an HCM's forward_client_cert_details (mode) and
// set_current_client_cert_details (which peer certificate fields
// APPEND_FORWARD and SANITIZE_SET write).
type XFCCConfig struct {
	// Mode is forward_client_cert_details: sanitize, forward, append, ...
	Mode hcmv3.HttpConnectionManager_ForwardClientCertDetails
	// Subject, URI, DNS, Cert and Chain are set_current_client_cert_details:
	// the elements of the client certificate the header carries.
	Subject, URI, DNS, Cert, Chain bool
}

// Apply rewrites a request's XFCC header as Envoy's connection manager
// does: ALWAYS_FORWARD_ONLY leaves it; SANITIZE, or any other mode on a
// connection without a client certificate, removes it; FORWARD_ONLY
// leaves it; APPEND_FORWARD appends (",") and SANITIZE_SET sets this
// hop's element: By (the proxy's URI SANs), Hash (hex SHA-256 of the
// client certificate), then Cert, Chain, Subject, URI, DNS as configured.
// local returns the proxy's URI SANs.
func (x XFCCConfig) Apply(h http.Header, cs *tls.ConnectionState, local func() []string) {
	if x.Mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY {
		return
	}
	if x.Mode == hcmv3.HttpConnectionManager_SANITIZE || cs == nil || len(cs.PeerCertificates) == 0 {
		h.Del(XFCCHeader)
		return
	}
	if x.Mode == hcmv3.HttpConnectionManager_FORWARD_ONLY {
		return
	}
	peer := cs.PeerCertificates[0]
	var parts []string
	for _, u := range local() {
		parts = append(parts, "By="+u)
	}
	sum := sha256.Sum256(peer.Raw)
	parts = append(parts, "Hash="+hex.EncodeToString(sum[:]))
	if x.Cert {
		parts = append(parts, `Cert="`+urlEncodePEM(pemOf(peer.Raw))+`"`)
	}
	if x.Chain {
		var b strings.Builder
		for _, c := range cs.PeerCertificates {
			b.WriteString(pemOf(c.Raw))
		}
		parts = append(parts, `Chain="`+urlEncodePEM(b.String())+`"`)
	}
	if x.Subject {
		// Present even when empty, as Envoy.
		parts = append(parts, `Subject="`+peer.Subject.String()+`"`)
	}
	if x.URI {
		if len(peer.URIs) == 0 {
			parts = append(parts, "URI=")
		}
		for _, u := range peer.URIs {
			parts = append(parts, "URI="+u.String())
		}
	}
	if x.DNS {
		for _, d := range peer.DNSNames {
			parts = append(parts, "DNS="+d)
		}
	}
	elem := strings.Join(parts, ";")
	if prev := h.Values(XFCCHeader); x.Mode == hcmv3.HttpConnectionManager_APPEND_FORWARD && len(prev) > 0 {
		elem = strings.Join(prev, ",") + "," + elem
	}
	h.Set(XFCCHeader, elem)
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// urlEncodePEM escapes a PEM block for an XFCC value as Envoy does.
var pemEscaper = strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D")

func urlEncodePEM(s string) string { return pemEscaper.Replace(s) }

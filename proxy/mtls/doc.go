// Package mtls holds the proxy's TLS at handshake time: TLS contexts
// built from Downstream- and UpstreamTlsContexts, the SDS secrets store
// that handshakes read (so rotations need no rebuild), peer certificate
// and SAN verification, and x-forwarded-client-cert.
package mtls

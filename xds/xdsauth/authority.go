package xdsauth

import "github.com/gitmesh/gitmesh/ca"

// Authorities returns the CA in force. A root rotation replaces it (the
// controller's certificate manager, sds.Manager, hands out a new
// Authority), so the certificate service, the server's TLS and the
// admission ask for it each time rather than keep one.
type Authorities interface {
	Authority() *ca.Authority
}

// AuthorityFunc adapts a function to Authorities.
type AuthorityFunc func() *ca.Authority

// Authority calls f.
func (f AuthorityFunc) Authority() *ca.Authority { return f() }

// Static returns Authorities that always answer a.
func Static(a *ca.Authority) Authorities {
	return AuthorityFunc(func() *ca.Authority { return a })
}

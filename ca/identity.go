package ca

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// DefaultTrustDomain is the trust domain of a mesh that names none, as
// Istio's.
const DefaultTrustDomain = "cluster.local"

// DefaultServiceAccount is the service account of a workload that
// announces none.
const DefaultServiceAccount = "default"

// Identity is a workload identity: the SPIFFE id
// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>, as Istio
// issues them.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// WorkloadIdentity is the identity of a workload that announced namespace
// and serviceAccount: an empty one is nodemeta.DefaultNamespace or
// DefaultServiceAccount (docs/security.md, "Identities").
func WorkloadIdentity(trustDomain, namespace, serviceAccount string) Identity {
	return Identity{
		TrustDomain:    trustDomain,
		Namespace:      cmp.Or(namespace, nodemeta.DefaultNamespace),
		ServiceAccount: cmp.Or(serviceAccount, DefaultServiceAccount),
	}
}

// String returns the SPIFFE id.
func (i Identity) String() string { return i.URL().String() }

// Principal returns the id without "spiffe://", as AuthorizationPolicy
// principals are written ("cluster.local/ns/default/sa/sleep").
func (i Identity) Principal() string {
	return i.TrustDomain + "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount
}

// URL returns the SPIFFE id as a URL, the form a certificate's URI SAN
// holds.
func (i Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: i.TrustDomain, Path: "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount}
}

// Validate reports whether every part is set and free of '/'.
func (i Identity) Validate() error {
	for _, p := range []struct{ name, v string }{
		{"trust domain", i.TrustDomain}, {"namespace", i.Namespace}, {"service account", i.ServiceAccount},
	} {
		if p.v == "" {
			return fmt.Errorf("identity %s: %s is empty", i.Principal(), p.name)
		}
		if strings.ContainsAny(p.v, "/ ") {
			return fmt.Errorf("identity %s: %s %q contains '/' or a space", i.Principal(), p.name, p.v)
		}
	}
	return nil
}

// ParseSPIFFEID parses spiffe://<td>/ns/<ns>/sa/<sa>.
func ParseSPIFFEID(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("parsing SPIFFE id %q: %w", s, err)
	}
	return identityFromURL(u)
}

func identityFromURL(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("parsing SPIFFE id %q: want spiffe://<trust domain>/ns/<namespace>/sa/<service account>", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("parsing SPIFFE id %q: want spiffe://<trust domain>/ns/<namespace>/sa/<service account>", u)
	}
	id := Identity{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// errNoSPIFFEID is returned for a certificate without a spiffe:// URI SAN.
var errNoSPIFFEID = errors.New("certificate has no spiffe:// URI SAN")

// Package xdsauth locks the xDS control plane: the certificate service
// proxies join with (Istio's IstioCertificateService.CreateCertificate,
// authenticated by a join token, a Kubernetes ServiceAccount token or the
// caller's current certificate), the TLS credentials of the xDS server,
// the admission that binds a stream's node to its certificate, and the
// proxy's side (Joiner: join, dial with mTLS, renew).
//
// A node's certificate binds what the node may announce: its node id
// (the subject CommonName), its namespace and service account (the
// SPIFFE id), and, in an extension of our own (Binding), its pod name and
// labels. The binding travels with the certificate, so the controller
// keeps no record of it and a restarted controller admits a node on the
// certificate it already has.
package xdsauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/gitmesh/gitmesh/ca"
)

// BindingOID identifies the certificate extension that holds a Binding's
// pod name and labels, non-critical: a random arc of our own under 2.25
// (X.667), kept under 2^31 because Go's certificate parser refuses larger
// arcs. Only our CA issues it and only the controller reads it.
var BindingOID = asn1.ObjectIdentifier{2, 25, 1912716289, 1}

// Binding is what a node's certificate binds it to.
type Binding struct {
	// NodeID is the node id (the certificate's subject CommonName).
	NodeID string
	// ID is the workload identity (the SPIFFE id URI SAN).
	ID ca.Identity
	// Pod is the pod name a Kubernetes ServiceAccount token named; "" for
	// join-token callers.
	Pod string
	// Labels are the labels a join-token caller declared. A node bound
	// to a Pod takes its labels from the Pod instead, so they are not
	// bound here.
	Labels map[string]string
}

// bindingExt is Binding's extension, DER: SEQUENCE { pod UTF8String,
// labels SEQUENCE OF SEQUENCE { key UTF8String, value UTF8String } }.
type bindingExt struct {
	Pod    string `asn1:"utf8"`
	Labels []labelExt
}

type labelExt struct {
	Key   string `asn1:"utf8"`
	Value string `asn1:"utf8"`
}

// Leaf returns the ca.Leaf that issues b's certificate.
func (b Binding) Leaf() (ca.Leaf, error) {
	if b.NodeID == "" {
		return ca.Leaf{}, errors.New("binding a certificate: node id is empty")
	}
	ext := bindingExt{Pod: b.Pod}
	for _, k := range slices.Sorted(maps.Keys(b.Labels)) {
		ext.Labels = append(ext.Labels, labelExt{Key: k, Value: b.Labels[k]})
	}
	der, err := asn1.Marshal(ext)
	if err != nil {
		return ca.Leaf{}, fmt.Errorf("encoding the binding of node %s: %w", b.NodeID, err)
	}
	return ca.Leaf{ID: b.ID, CommonName: b.NodeID, ExtraExtensions: []pkix.Extension{{Id: BindingOID, Value: der}}}, nil
}

// BindingOf reads the Binding of a certificate the CA issued to a node.
func BindingOf(c *x509.Certificate) (Binding, error) {
	id, err := ca.IdentityOf(c)
	if err != nil {
		return Binding{}, fmt.Errorf("reading node binding: %w", err)
	}
	b := Binding{NodeID: c.Subject.CommonName, ID: id}
	if b.NodeID == "" {
		return Binding{}, errors.New("reading node binding: certificate has no CommonName (node id)")
	}
	for _, e := range c.Extensions {
		if !e.Id.Equal(BindingOID) {
			continue
		}
		var ext bindingExt
		rest, err := asn1.Unmarshal(e.Value, &ext)
		if err != nil || len(rest) > 0 {
			return Binding{}, fmt.Errorf("reading node binding of %s: malformed extension", b.NodeID)
		}
		b.Pod = ext.Pod
		for _, l := range ext.Labels {
			if b.Labels == nil {
				b.Labels = map[string]string{}
			}
			b.Labels[l.Key] = l.Value
		}
		return b, nil
	}
	return Binding{}, fmt.Errorf("reading node binding of %s: certificate has no gitmesh binding extension (not issued to a node)", b.NodeID)
}

package kubestate

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gitmesh/gitmesh/ca"
)

// CASecretType is the type of the Secret that keeps the mesh CA's root.
const CASecretType corev1.SecretType = "gitmesh.io/ca"

// CASecret keeps the mesh CA's root (ca.Material) in a Secret of the
// controller's namespace, under the file names of ca.WriteDir, so that
// every replica and every restart signs with the same root. Unlike the
// state Secrets it is not owned by the MeshRollout: deleting the
// MeshRollout must not change the mesh's identity.
type CASecret struct {
	c        client.Client
	ns, name string
}

// NewCASecret returns the store of the root in the Secret namespace/name
// (the controller names it "<MeshRollout name>-ca").
func NewCASecret(c client.Client, namespace, name string) *CASecret {
	return &CASecret{c: c, ns: namespace, name: name}
}

// LoadOrCreate returns the root kept in the Secret, or, when there is no
// Secret, creates it with the root gen returns and reports true. When
// another replica creates it first (a conflict on create), the one it
// created is read and returned.
func (s *CASecret) LoadOrCreate(ctx context.Context, gen func() (ca.Material, error)) (ca.Material, bool, error) {
	m, err := s.load(ctx)
	if err == nil {
		return m, false, nil
	}
	if !apierrors.IsNotFound(err) {
		return ca.Material{}, false, err
	}
	if m, err = gen(); err != nil {
		return ca.Material{}, false, err
	}
	sec := s.secret(m)
	switch err := s.c.Create(ctx, sec); {
	case err == nil:
		return m, true, nil
	case apierrors.IsAlreadyExists(err):
		m, err := s.load(ctx)
		return m, false, err
	default:
		return ca.Material{}, false, fmt.Errorf("creating CA secret %s/%s: %w", s.ns, s.name, err)
	}
}

// Save replaces the root kept in the Secret (creating it if absent).
func (s *CASecret) Save(ctx context.Context, m ca.Material) error {
	cur := &corev1.Secret{}
	err := s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: s.name}, cur)
	if apierrors.IsNotFound(err) {
		if err := s.c.Create(ctx, s.secret(m)); err != nil {
			return fmt.Errorf("creating CA secret %s/%s: %w", s.ns, s.name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading CA secret %s/%s: %w", s.ns, s.name, err)
	}
	sec := s.secret(m)
	sec.ResourceVersion = cur.ResourceVersion
	if err := s.c.Update(ctx, sec); err != nil {
		return fmt.Errorf("writing CA secret %s/%s: %w", s.ns, s.name, err)
	}
	return nil
}

// load reads the root; a missing Secret is an apierrors NotFound.
func (s *CASecret) load(ctx context.Context) (ca.Material, error) {
	sec := &corev1.Secret{}
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: s.name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return ca.Material{}, err
		}
		return ca.Material{}, fmt.Errorf("reading CA secret %s/%s: %w", s.ns, s.name, err)
	}
	m := ca.Material{CertPEM: sec.Data[ca.CertFile], KeyPEM: sec.Data[ca.KeyFile], TrustedPEM: sec.Data[ca.TrustedFile]}
	if len(m.CertPEM) == 0 || len(m.KeyPEM) == 0 {
		return ca.Material{}, fmt.Errorf("reading CA secret %s/%s: %w", s.ns, s.name,
			errors.New("it lacks "+ca.CertFile+" or "+ca.KeyFile))
	}
	return m, nil
}

func (s *CASecret) secret(m ca.Material) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "gitmesh"}},
		Type: CASecretType,
		Data: map[string][]byte{ca.CertFile: m.CertPEM, ca.KeyFile: m.KeyPEM, ca.TrustedFile: m.TrustedPEM},
	}
}

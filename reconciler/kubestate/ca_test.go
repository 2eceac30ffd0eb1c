package kubestate_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/reconciler/kubestate"
)

// TestCASecret: replicas starting together agree on one root; a restart
// reads it back; Save replaces it.
func TestCASecret(t *testing.T) {
	c, _, ns := newClient(t)
	ctx := context.Background()
	gen := func() (ca.Material, error) { return ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now()) }

	const replicas = 3
	var (
		wg      sync.WaitGroup
		roots   [replicas]ca.Material
		created [replicas]bool
		errs    [replicas]error
	)
	for i := range replicas {
		wg.Go(func() {
			roots[i], created[i], errs[i] = kubestate.NewCASecret(c, ns, "gitmesh-ca").LoadOrCreate(ctx, gen)
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if created[i] {
			nCreated++
		}
		if !bytes.Equal(roots[i].CertPEM, roots[0].CertPEM) || !bytes.Equal(roots[i].KeyPEM, roots[0].KeyPEM) {
			t.Fatalf("replica %d signs with another root", i)
		}
	}
	if nCreated != 1 {
		t.Fatalf("%d replicas created the root; want 1", nCreated)
	}

	// A rotation persisted, then a restart.
	a, err := ca.New(ca.DefaultTrustDomain, roots[0])
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := a.Rotate(0)
	if err != nil {
		t.Fatal(err)
	}
	st := kubestate.NewCASecret(c, ns, "gitmesh-ca")
	if err := st.Save(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	got, created2, err := st.LoadOrCreate(ctx, func() (ca.Material, error) {
		t.Fatal("generated a root although the Secret holds one")
		return ca.Material{}, nil
	})
	if err != nil || created2 {
		t.Fatalf("LoadOrCreate after restart = created %t, %v", created2, err)
	}
	if !bytes.Equal(got.CertPEM, rotated.CertPEM) || !bytes.Equal(got.TrustedPEM, rotated.TrustedPEM) {
		t.Fatal("restart did not read the rotated root with the old one trusted")
	}
}

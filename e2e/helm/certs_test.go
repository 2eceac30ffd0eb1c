package helm

import (
	"bytes"
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gitmesh/gitmesh/inject"
)

// TestInjectorCertificate runs the certificate keeper of several replicas
// against one Secret: they agree on one certificate, replace a Secret
// that lies (garbage, another CA's key), and report a missing webhook
// configuration.
func TestInjectorCertificate(t *testing.T) {
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(adminCfg)
	const ns, hook = "certs-test", "certs-test-webhook"
	// envtest runs no namespace controller: a namespace outlives its test,
	// so a second pass (go test -count=2) reuses it and the test removes
	// what it made inside it.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, hook, metav1.DeleteOptions{})
	})
	none := admissionregistrationv1.SideEffectClassNone
	url := "https://127.0.0.1:1/inject"
	if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: hook},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "a.certs-test.gitmesh.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
			SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := func(secret, webhook string) inject.CertConfig {
		return inject.CertConfig{Namespace: ns, SecretName: secret, WebhookName: webhook, Hosts: []string{"gitmesh-injector.certs-test.svc"}, Generate: true}
	}
	serving := func(c *inject.Certs) *x509.Certificate {
		t.Helper()
		cert, err := c.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}

	t.Run("replicas share one certificate", func(t *testing.T) {
		replicas := make([]*inject.Certs, 3)
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for i := range replicas {
			replicas[i] = inject.NewCerts(admin, cfg("shared", hook))
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = replicas[i].Sync(ctx)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
		}
		first := serving(replicas[0])
		for i, r := range replicas[1:] {
			if !first.Equal(serving(r)) {
				t.Errorf("replica %d serves another certificate than replica 0", i+1)
			}
		}
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, "shared", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mwc, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, hook, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, s.Data[inject.SecretKeyCA]) {
			t.Error("the caBundle is not the Secret's CA")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle)
		if _, err := first.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gitmesh-injector.certs-test.svc"}); err != nil {
			t.Errorf("the served certificate does not verify against the caBundle: %v", err)
		}
	})

	t.Run("a Secret that lies is replaced", func(t *testing.T) {
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "garbage"},
			Data:       map[string][]byte{inject.SecretKeyCert: []byte("not a certificate"), inject.SecretKeyPrivKey: []byte("nor a key")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := inject.NewCerts(admin, cfg("garbage", ""))
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if leaf := serving(c); !slices.Contains(leaf.DNSNames, "gitmesh-injector.certs-test.svc") {
			t.Errorf("serving %v; want a certificate for the injector's Service", leaf.DNSNames)
		}
	})

	t.Run("a missing webhook configuration is an error", func(t *testing.T) {
		c := inject.NewCerts(admin, cfg("shared", "no-such-webhook"))
		err := c.Sync(ctx)
		if err == nil || !strings.Contains(err.Error(), "no-such-webhook") {
			t.Fatalf("Sync = %v; want an error naming the webhook configuration", err)
		}
		if _, err := c.GetCertificate(nil); err != nil {
			t.Errorf("the certificate is not served while the caBundle cannot be patched: %v", err)
		}
	})

	t.Run("cert-manager's Secret is only read", func(t *testing.T) {
		c := inject.NewCerts(admin, inject.CertConfig{Namespace: ns, SecretName: "not-issued-yet"})
		if err := c.Sync(ctx); err == nil {
			t.Fatal("Sync of a missing cert-manager Secret succeeded")
		}
		if _, err := admin.CoreV1().Secrets(ns).Get(ctx, "not-issued-yet", metav1.GetOptions{}); err == nil {
			t.Error("the controller created the Secret cert-manager owns")
		}
	})
}

package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Keys of the certificate Secret: cert-manager's, so a Secret it issues
// reads the same way, plus ca.key for the CA the controller keeps.
const (
	SecretKeyCA      = "ca.crt"
	SecretKeyCAKey   = "ca.key"
	SecretKeyCert    = "tls.crt"
	SecretKeyPrivKey = "tls.key"
)

// CertConfig configures the webhook's serving certificate.
type CertConfig struct {
	// Namespace and SecretName locate the Secret that holds the
	// certificate. Required. The chart creates it empty; the controller
	// fills it (and creates it when it is missing).
	Namespace, SecretName string
	// WebhookName is the MutatingWebhookConfiguration whose webhooks get
	// the CA as their clientConfig.caBundle. Empty: none is patched (with
	// cert-manager, its cainjector does it).
	WebhookName string
	// Hosts are the DNS names and IP addresses the serving certificate is
	// valid for: the injector Service's <name>.<namespace>.svc. Required
	// when Generate is set.
	Hosts []string
	// Generate makes the controller issue the certificate: a self-signed
	// ECDSA P-256 CA valid ten years and a leaf valid LeafValidity,
	// renewed under the same CA when less than a third of it remains, so
	// the caBundle does not change. False: the Secret is someone else's
	// (cert-manager's Certificate) and is only read.
	Generate bool
	// LeafValidity of a generated serving certificate. Default one year.
	LeafValidity time.Duration
	// Interval between two Syncs in Run. Default one minute.
	Interval time.Duration
	// Timeout bounds one Sync: an API server that hangs fails it, and
	// the certificate of the last good Sync keeps serving. Default 30s.
	Timeout time.Duration
	// Logger receives Run's errors. If nil, logs are discarded.
	Logger *slog.Logger
}

// Certs keeps the webhook's serving certificate: it reads (and with
// Generate, issues) the Secret, serves the certificate through
// GetCertificate, and keeps the webhook configuration's caBundle equal to
// the Secret's CA. Replicas share the Secret: the first to find it empty
// fills it, the others read what it wrote (a write conflict sends them
// back to read).
type Certs struct {
	client kubernetes.Interface
	cfg    CertConfig
	now    func() time.Time
	cert   atomic.Pointer[tls.Certificate] // the certificate served
}

// NewCerts returns a Certs that serves nothing until its first Sync.
func NewCerts(client kubernetes.Interface, cfg CertConfig) *Certs {
	if cfg.LeafValidity == 0 {
		cfg.LeafValidity = 365 * 24 * time.Hour
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Certs{client: client, cfg: cfg, now: time.Now}
}

// ErrNoCertificate is GetCertificate's error before the first good Sync.
var ErrNoCertificate = errors.New("the injector has no serving certificate yet")

// GetCertificate returns the certificate of the last good Sync; it is a
// tls.Config.GetCertificate.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, ErrNoCertificate
}

// Run calls Sync at once and then every Interval until ctx is done,
// logging failures; the certificate of the last good Sync keeps serving
// meanwhile. Until a first Sync succeeds it retries every two seconds.
func (c *Certs) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := c.cfg.Interval
		if err := c.Sync(ctx); err != nil {
			c.cfg.Logger.Error("keeping the injector's certificate", "error", err)
			if c.cert.Load() == nil {
				wait = min(wait, 2*time.Second)
			}
		}
		t.Reset(wait)
	}
}

// Sync reads the Secret (issuing or renewing the certificate in it when
// Generate is set), serves its certificate, and patches the webhook
// configuration's caBundle when it differs, within Timeout.
func (c *Certs) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var data map[string][]byte
	var err error
	if c.cfg.Generate {
		data, err = c.ensureSecret(ctx)
	} else {
		data, err = c.readSecret(ctx)
	}
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(data[SecretKeyCert], data[SecretKeyPrivKey])
	if err != nil {
		return fmt.Errorf("loading the injector's certificate from secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
	}
	c.cert.Store(&cert)
	if c.cfg.WebhookName == "" {
		return nil
	}
	ca := data[SecretKeyCA]
	if len(ca) == 0 {
		return fmt.Errorf("patching webhook %s: secret %s/%s has no %s", c.cfg.WebhookName, c.cfg.Namespace, c.cfg.SecretName, SecretKeyCA)
	}
	return c.patchCABundle(ctx, ca)
}

// readSecret returns the Secret's data once it holds a certificate.
func (c *Certs) readSecret(ctx context.Context) (map[string][]byte, error) {
	s, err := c.client.CoreV1().Secrets(c.cfg.Namespace).Get(ctx, c.cfg.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the injector's certificate: %w", err)
	}
	if len(s.Data[SecretKeyCert]) == 0 || len(s.Data[SecretKeyPrivKey]) == 0 {
		return nil, fmt.Errorf("reading the injector's certificate: secret %s/%s has no %s and %s yet", c.cfg.Namespace, c.cfg.SecretName, SecretKeyCert, SecretKeyPrivKey)
	}
	return s.Data, nil
}

// ensureSecret returns the Secret's data after making sure it holds a
// certificate this controller would have issued: valid for every host,
// under its CA, not due for renewal.
func (c *Certs) ensureSecret(ctx context.Context) (map[string][]byte, error) {
	secrets := c.client.CoreV1().Secrets(c.cfg.Namespace)
	for attempt := 0; ; attempt++ {
		s, err := secrets.Get(ctx, c.cfg.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			data, err := issue(nil, c.cfg.Hosts, c.now(), c.cfg.LeafValidity)
			if err != nil {
				return nil, err
			}
			s = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: c.cfg.SecretName, Namespace: c.cfg.Namespace},
				Type:       corev1.SecretTypeOpaque,
				Data:       data,
			}
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue // another replica created it: read theirs
			}
			if err != nil {
				return nil, fmt.Errorf("creating secret %s/%s for the injector's certificate: %w", c.cfg.Namespace, c.cfg.SecretName, err)
			}
			return data, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the injector's certificate: %w", err)
		}
		if reason := c.unusable(s.Data); reason == "" {
			return s.Data, nil
		} else if attempt == 0 {
			c.cfg.Logger.Info("issuing the injector's serving certificate", "secret", c.cfg.SecretName, "reason", reason)
		}
		data, err := issue(s.Data, c.cfg.Hosts, c.now(), c.cfg.LeafValidity)
		if err != nil {
			return nil, err
		}
		s.Data = data
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue // another replica wrote it first: check theirs
		}
		if err != nil {
			return nil, fmt.Errorf("writing the injector's certificate to secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
		}
		return data, nil
	}
}

// unusable says why data does not hold a good certificate ("" when it does).
func (c *Certs) unusable(data map[string][]byte) string {
	if len(data[SecretKeyCert]) == 0 {
		return "empty"
	}
	ca, _, err := parseCA(data)
	if err != nil {
		return err.Error()
	}
	leaf, err := parseLeaf(data)
	if err != nil {
		return err.Error()
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return "certificate not signed by the CA"
	}
	for _, h := range c.cfg.Hosts {
		if leaf.VerifyHostname(h) != nil {
			return "certificate not valid for " + h
		}
	}
	now := c.now()
	if now.Before(leaf.NotBefore) || now.Add(leaf.NotAfter.Sub(leaf.NotBefore)/3).After(leaf.NotAfter) {
		return "certificate due for renewal"
	}
	return ""
}

// patchCABundle sets every webhook's caBundle of the configuration to ca.
func (c *Certs) patchCABundle(ctx context.Context, ca []byte) error {
	hooks := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mwc, err := hooks.Get(ctx, c.cfg.WebhookName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for i := range mwc.Webhooks {
			if string(mwc.Webhooks[i].ClientConfig.CABundle) != string(ca) {
				mwc.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = hooks.Update(ctx, mwc, metav1.UpdateOptions{})
		if err == nil {
			c.cfg.Logger.Info("patched the injector's caBundle", "webhook", c.cfg.WebhookName)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("patching the caBundle of webhook %s: %w", c.cfg.WebhookName, err)
	}
	return nil
}

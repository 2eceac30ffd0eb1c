package inject

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/faultnet"
)

// apiServer answers the two reads Certs makes (its Secret, its webhook
// configuration) as an API server would, until it is told to fail.
type apiServer struct {
	data map[string][]byte
	fail atomic.Bool // answer 500 to everything
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.fail.Load() {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is down","code":500}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/v1/namespaces/gitmesh-system/secrets/injector-tls":
		_ = json.NewEncoder(w).Encode(corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "injector-tls", Namespace: "gitmesh-system", ResourceVersion: "1"},
			Data:       s.data,
		})
	case "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/injector":
		_ = json.NewEncoder(w).Encode(admissionregistrationv1.MutatingWebhookConfiguration{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
			ObjectMeta: metav1.ObjectMeta{Name: "injector", ResourceVersion: "1"},
			Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a", ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: s.data[SecretKeyCA]}}},
		})
	default:
		http.NotFound(w, r)
	}
}

// TestCertsFaults: an API server that fails or hangs fails Sync within
// its Timeout, and the certificate of the last good Sync keeps serving.
func TestCertsFaults(t *testing.T) {
	hosts := []string{"gitmesh-injector.gitmesh-system.svc"}
	data, err := issue(nil, hosts, time.Now(), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	api := &apiServer{data: data}
	srv := httptest.NewServer(api)
	defer srv.Close()
	hole, err := faultnet.NewBlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()

	cfg := CertConfig{Namespace: "gitmesh-system", SecretName: "injector-tls", WebhookName: "injector", Hosts: hosts, Generate: true, Timeout: 500 * time.Millisecond}
	good := NewCerts(kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL}), cfg)
	if err := good.Sync(context.Background()); err != nil {
		t.Fatalf("Sync against a healthy API server: %v", err)
	}
	served, err := good.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		certs *Certs
		setup func()
	}{
		{name: "the API server fails", certs: good, setup: func() { api.fail.Store(true) }},
		{name: "the API server hangs", certs: NewCerts(kubernetes.NewForConfigOrDie(&rest.Config{Host: "http://" + hole.Addr()}), cfg)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			start := time.Now()
			err := tt.certs.Sync(context.Background())
			if err == nil {
				t.Fatal("Sync succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Sync returned after %s; want about its 500ms timeout", d)
			}
		})
	}
	if got, err := good.GetCertificate(nil); err != nil || got != served {
		t.Errorf("after failed Syncs GetCertificate = %p, %v; want the last good certificate", got, err)
	}
	if _, err := tests[1].certs.GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("a Certs that never synced serves: %v; want ErrNoCertificate", err)
	}
}

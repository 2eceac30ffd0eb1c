package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

func review(t *testing.T, kind metav1.GroupVersionKind, op admissionv1.Operation, obj any) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "0c1d2e3f", Kind: kind, Operation: op, Namespace: "shop",
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(testConfig(CaptureIPTables), nil))
	defer srv.Close()
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

	tests := []struct {
		name        string
		body        []byte
		wantStatus  int
		wantAllowed bool
		wantPatch   bool
		wantMessage string
	}{
		{name: "a pod is patched", body: review(t, podKind, admissionv1.Create, appPod()), wantStatus: 200, wantAllowed: true, wantPatch: true},
		{name: "an opted-out pod is allowed untouched", wantStatus: 200, wantAllowed: true,
			body: review(t, podKind, admissionv1.Create, appPod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInject: "false"} }))},
		{name: "an update is allowed untouched", body: review(t, podKind, admissionv1.Update, appPod()), wantStatus: 200, wantAllowed: true},
		{name: "another kind is allowed untouched", wantStatus: 200, wantAllowed: true,
			body: review(t, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, admissionv1.Create, map[string]any{"kind": "Deployment"})},
		{name: "a pod that cannot be injected is denied with the reason", wantStatus: 200, wantMessage: AnnotationAppPort,
			body: review(t, podKind, admissionv1.Create, appPod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationAppPort: "x"} }))},
		{name: "not a review", body: []byte(`{"kind":`), wantStatus: 400},
		{name: "a review without request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/inject", "application/json", bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != "0c1d2e3f" {
				t.Fatalf("review = %+v; want an admission.k8s.io/v1 response to uid 0c1d2e3f", out)
			}
			r := out.Response
			if r.Allowed != tt.wantAllowed {
				t.Errorf("allowed = %v; want %v (%+v)", r.Allowed, tt.wantAllowed, r.Result)
			}
			if got := len(r.Patch) > 0; got != tt.wantPatch {
				t.Errorf("patch = %s; want patch %v", r.Patch, tt.wantPatch)
			}
			if tt.wantPatch && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patchType = %v; want JSONPatch", r.PatchType)
			}
			if tt.wantMessage != "" && (r.Result == nil || !strings.Contains(r.Result.Message, tt.wantMessage)) {
				t.Errorf("result = %+v; want a message naming %q", r.Result, tt.wantMessage)
			}
		})
	}

	t.Run("GET is refused", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/inject")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status = %d; want 405", resp.StatusCode)
		}
	})
}

package inject

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview body; the API server sends at
// most 3 MiB objects, a review carries one.
const maxReviewBytes = 6 << 20

// Handler answers admission.k8s.io/v1 AdmissionReviews for pods (POST,
// application/json) with Mutate's patch. A review it cannot decode is a
// 400; a pod it cannot decode or inject (a bad sidecar.gitmesh.io/app-port
// annotation) is denied with the reason, as Istio's injector does, so a
// pod of a mesh namespace never runs outside the mesh unnoticed. Requests
// for other kinds and operations are allowed untouched. A nil logger
// discards logs.
func Handler(cfg Config, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil {
			http.Error(w, "reading the AdmissionReview: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxReviewBytes {
			http.Error(w, "AdmissionReview too large", http.StatusRequestEntityTooLarge)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, fmt.Sprintf("decoding the AdmissionReview: %v", orMissing(err)), http.StatusBadRequest)
			return
		}
		out := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Response: admit(review.Request, cfg, log),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

func orMissing(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("no request")
}

// admit decides one request.
func admit(req *admissionv1.AdmissionRequest, cfg Config, log *slog.Logger) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(resp, fmt.Errorf("decoding the pod: %w", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	res, err := Mutate(&pod, cfg)
	if err != nil {
		log.Info("pod denied", "namespace", req.Namespace, "pod", name, "error", err)
		return deny(resp, err)
	}
	if len(res.Patch) == 0 {
		log.Debug("sidecar not injected", "namespace", req.Namespace, "pod", name, "reason", res.Skipped)
		return resp
	}
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		return deny(resp, fmt.Errorf("encoding the patch: %w", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	log.Info("sidecar injected", "namespace", req.Namespace, "pod", name, "capture_mode", cfg.withDefaults().CaptureMode)
	return resp
}

// deny refuses the request with err as its message.
func deny(resp *admissionv1.AdmissionResponse, err error) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Message: "gitmesh sidecar injector: " + err.Error(), Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}
	return resp
}

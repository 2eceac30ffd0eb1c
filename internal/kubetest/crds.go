package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// InstallCRDs decodes every CustomResourceDefinition in the YAML files of
// dir strictly (a field the apiextensions.k8s.io/v1 schema does not know
// fails), creates them in the API server of cfg and waits until each is
// Established, or timeout passes.
func InstallCRDs(ctx context.Context, cfg *rest.Config, dir string, timeout time.Duration) ([]string, error) {
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("installing CRDs: no YAML in %s (%v)", dir, err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("installing CRDs: %w", err)
		}
		for i, doc := range strings.Split(string(b), "\n---") {
			if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
				continue
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict([]byte(doc), &crd); err != nil {
				return nil, fmt.Errorf("decoding %s (document %d) strictly: %w", f, i+1, err)
			}
			if crd.Kind != "CustomResourceDefinition" || crd.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
				return nil, fmt.Errorf("decoding %s (document %d): %s %s is not an apiextensions.k8s.io/v1 CustomResourceDefinition", f, i+1, crd.APIVersion, crd.Kind)
			}
			if err := c.Create(ctx, &crd); err != nil {
				return nil, fmt.Errorf("creating CRD %s from %s: %w", crd.Name, f, err)
			}
			names = append(names, crd.Name)
		}
	}
	deadline := time.Now().Add(timeout)
	for _, name := range names {
		for {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, types.NamespacedName{Name: name}, &crd); err != nil {
				return nil, fmt.Errorf("reading CRD %s: %w", name, err)
			}
			if established(&crd) {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("CRD %s not Established within %s", name, timeout)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return names, nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

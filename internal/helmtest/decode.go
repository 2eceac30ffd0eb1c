package helmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest, decoded.
type Object struct {
	// Source is the template it came from ("gitmesh/templates/x.yaml").
	Source string
	// GVK, Name and Namespace identify it.
	GVK             schema.GroupVersionKind
	Name, Namespace string
	// Obj is the typed object (*appsv1.Deployment, ...), or for a kind of
	// another project (ServiceMonitor, cert-manager's) the test-local
	// struct it decoded into.
	Obj any
}

// newScheme returns client-go's scheme with the CRD type added.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeStrict decodes every document of a `helm template` stream into
// the Kubernetes API types, failing on unknown or duplicate fields (the
// strict serializer), on kinds it does not know, and on documents
// without a name.
func DecodeStrict(manifests string) ([]Object, error) {
	s, err := newScheme()
	if err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	ser := k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, s, s, k8sjson.SerializerOptions{Yaml: true, Strict: true})
	var out []Object
	var errs []error
	for _, doc := range splitDocuments(manifests) {
		source := sourceOf(doc)
		var meta struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		if meta.Kind == "" && meta.APIVersion == "" {
			continue // only comments
		}
		gvk := schema.FromAPIVersionAndKind(meta.APIVersion, meta.Kind)
		o := Object{Source: source, GVK: gvk, Name: meta.Name, Namespace: meta.Namespace}
		if o.Name == "" {
			errs = append(errs, fmt.Errorf("%s: %s without a name", source, gvk.Kind))
			continue
		}
		if s.Recognizes(gvk) {
			obj, _, err := ser.Decode([]byte(doc), nil, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %s: %w", source, gvk.Kind, o.Name, err))
				continue
			}
			o.Obj = obj
		} else if newExt, ok := externalKinds[gvk]; ok {
			ext := newExt()
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err == nil {
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.DisallowUnknownFields()
				err = dec.Decode(ext)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %s: %w", source, gvk.Kind, o.Name, err))
				continue
			}
			o.Obj = ext
		} else {
			errs = append(errs, fmt.Errorf("%s: unknown kind %s", source, gvk))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// sourceOf reads helm's "# Source: ..." comment.
func sourceOf(doc string) string {
	for _, line := range strings.Split(doc, "\n") {
		if rest, ok := strings.CutPrefix(line, "# Source: "); ok {
			return rest
		}
	}
	return "(no source)"
}

// Find returns the objects of a kind, and of a name when name is not "".
func Find(objs []Object, kind, name string) []Object {
	var out []Object
	for _, o := range objs {
		if o.GVK.Kind == kind && (name == "" || o.Name == name) {
			out = append(out, o)
		}
	}
	return out
}

package review

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// validation builds a policy with an error (undefined subset), a warning
// (an unknown kind) and a clean object.
func validation(t *testing.T) *Validation {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"policy/services.yaml": servicesYAML,
		"policy/reviews.yaml":  reviewsYAML[:len(reviewsYAML)-len("        subset: v1\n")] + "        subset: v9\n",
		"policy/extra.yaml":    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, _, err := sources.Build(dir, "policy")
	if err != nil {
		t.Fatal(err)
	}
	_, diags := compiler.Parse(objs)
	return &Validation{Objects: objs, Diagnostics: diags}
}

func TestValidationGolden(t *testing.T) {
	v := validation(t)
	for _, format := range []string{FormatText, FormatJSON, FormatGitHub, FormatJUnit} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := v.Write(&buf, format); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "validate."+format+".golden", buf.Bytes())
		})
	}
}

func TestValidationThreshold(t *testing.T) {
	v := validation(t)
	if !v.AtOrAbove(compiler.SeverityError) || !v.AtOrAbove(compiler.SeverityWarning) {
		t.Errorf("AtOrAbove(error|warning) = false with an error present")
	}
	warnOnly := &Validation{Diagnostics: compiler.Diagnostics{{Code: compiler.CodeUnknownKind, Severity: compiler.SeverityWarning}}}
	if warnOnly.AtOrAbove(compiler.SeverityError) {
		t.Errorf("a warning is at or above error")
	}
	if !warnOnly.AtOrAbove(compiler.SeverityWarning) {
		t.Errorf("a warning is not at or above warning")
	}
}

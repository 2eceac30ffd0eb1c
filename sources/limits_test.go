package sources

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildSizeLimits(t *testing.T) {
	doc := func(name string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: " + name + "\n"
	}
	// sparse makes a file of size bytes without writing them.
	sparse := func(t *testing.T, p string, size int64) {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		files    map[string]string
		sparse   map[string]int64
		opts     []BuildOption
		wantIs   error
		wantFile string // the *BuildError's file, when wantIs is ErrFileTooLarge
	}{
		{name: "a 1 GiB YAML file is refused by its size", files: map[string]string{"a.yaml": doc("a")},
			sparse: map[string]int64{"huge.yaml": 1 << 30}, wantIs: ErrFileTooLarge, wantFile: "huge.yaml"},
		{name: "per-file cap", files: map[string]string{"a.yaml": doc("a"), "b.yaml": doc("b") + strings.Repeat("#\n", 600)},
			opts: []BuildOption{WithMaxFileBytes(1000)}, wantIs: ErrFileTooLarge, wantFile: "b.yaml"},
		{name: "big files that are not YAML are not read", files: map[string]string{"a.yaml": doc("a")},
			sparse: map[string]int64{"image.png": 1 << 30}},
		{name: "kustomize reads every file, so every file counts", files: map[string]string{
			"kustomization.yaml": "resources:\n- a.yaml\n", "a.yaml": doc("a")},
			sparse: map[string]int64{"docs/image.png": 1 << 30}, wantIs: ErrFileTooLarge, wantFile: "docs/image.png"},
		{name: "total cap", files: map[string]string{"a.yaml": doc("a") + strings.Repeat("#\n", 300), "b.yaml": doc("b") + strings.Repeat("#\n", 300)},
			opts: []BuildOption{WithMaxBytes(1000)}, wantIs: ErrRepoTooLarge},
		{name: "under both caps", files: map[string]string{"a.yaml": doc("a"), "b.yaml": doc("b")},
			opts: []BuildOption{WithMaxBytes(1000), WithMaxFileBytes(200)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for name, size := range tt.sparse {
				p := filepath.Join(root, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				sparse(t, p, size)
			}
			objs, _, err := Build(root, "", tt.opts...)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(objs) == 0 {
					t.Error("got no objects")
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got %v; want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantFile != "" {
				var be *BuildError
				if !errors.As(err, &be) || be.File != tt.wantFile {
					t.Errorf("got %v; want a *BuildError naming %s", err, tt.wantFile)
				}
			}
		})
	}
}

package sources

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrRemoteBase is wrapped by the *BuildError Build returns when a
// kustomization refers to a remote base, resource or file (a Git or HTTP
// URL): builds only read the repository they were given.
var ErrRemoteBase = errors.New("remote kustomize bases and resources are not allowed")

// BuildError is an error in the repository's files: bad YAML, a document
// without kind, apiVersion or metadata.name, a failed kustomize build.
type BuildError struct {
	// File is the path of the offending file, relative to the repository
	// root (for kustomize failures, the kustomization file).
	File string
	// Line is the 1-based line in File (0 when unknown).
	Line int
	// Err is the cause.
	Err error
}

// Error reads "file:line: cause" ("file: cause" when the line is unknown).
func (e *BuildError) Error() string {
	switch {
	case e.File == "":
		return e.Err.Error()
	case e.Line <= 0:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

// Unwrap returns Err.
func (e *BuildError) Unwrap() error { return e.Err }

// Origin returns File and Line as an Origin.
func (e *BuildError) Origin() Origin { return Origin{File: e.File, Line: e.Line} }

// DefaultMaxBytes is how much YAML Build reads by default (64 MiB).
const DefaultMaxBytes = 64 << 20

// DefaultMaxFileBytes is the largest file Build reads by default (4 MiB).
const DefaultMaxFileBytes = 4 << 20

// BuildOption configures Build.
type BuildOption func(*buildConfig)

type buildConfig struct {
	maxBytes, maxFileBytes int64
}

// WithMaxBytes bounds the total size of the files Build reads (default
// DefaultMaxBytes); a larger tree is an error wrapping ErrRepoTooLarge,
// found from file sizes before the file that crosses it is read.
func WithMaxBytes(n int64) BuildOption {
	return func(c *buildConfig) { c.maxBytes = n }
}

// WithMaxFileBytes bounds the size of each file Build reads (default
// DefaultMaxFileBytes); a larger file is a *BuildError naming it, wrapping
// ErrFileTooLarge, found from its size before it is read.
func WithMaxFileBytes(n int64) BuildOption {
	return func(c *buildConfig) { c.maxFileBytes = n }
}

// Build builds the directory path (relative to root, the work tree root;
// "" or "." is root itself) into Objects.
//
// When the directory holds a kustomization (kustomization.yaml,
// kustomization.yml or Kustomization), Build runs kustomize on it, in
// memory, over a copy of root (hidden directories such as .git left out),
// and returns the objects in kustomize's output order. Each Object's Origin
// is the file the resource was written in (for patched resources, the base
// file) and Lines come from that file. Remote bases are refused
// (ErrRemoteBase).
//
// Otherwise Build reads every *.yaml and *.yml file under the directory,
// recursively, skipping hidden files and directories and kustomization
// files; it splits multi-document files, skips empty documents and returns
// the objects sorted by file, then line.
//
// A defect of one document (bad YAML, a document that is not a mapping, a
// missing apiVersion, kind or metadata.name, a duplicate mapping key) is a
// Problem naming file and line: Build leaves that document out (keeps it,
// for a duplicate key) and goes on with the rest, so every problem of a
// revision is reported at once. A kustomize build that fails, a remote
// base, or an unreadable tree is an error (a *BuildError when it is about
// a file): then nothing could be read.
//
// Documents that are empty, comment-only or an explicit null are skipped,
// as kubectl skips them. A document of kind List (or a typed list such as
// ServiceList) is expanded into its items, each with its own line.
//
// A file over the per-file cap, or a tree over the total cap, is refused
// by its size before it is read (ErrFileTooLarge, ErrRepoTooLarge).
func Build(root, path string, opts ...BuildOption) ([]Object, []Problem, error) {
	cfg := buildConfig{maxBytes: DefaultMaxBytes, maxFileBytes: DefaultMaxFileBytes}
	for _, o := range opts {
		o(&cfg)
	}
	rel, err := cleanRel(path)
	if err != nil {
		return nil, nil, err
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, nil, fmt.Errorf("resolving build root: %w", err)
	}
	dir := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("building %s: %w", rel, err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("building %s: not a directory", rel)
	}
	if k := kustomizationIn(dir); k != "" {
		objs, err := buildKustomize(root, rel, k, cfg)
		return objs, nil, err
	}
	return buildPlain(root, rel, cfg)
}

// cleanRel checks that p is a relative path inside the root and returns it
// slash-separated and clean ("." for the root).
func cleanRel(p string) (string, error) {
	p = filepath.ToSlash(p)
	if p == "" {
		return ".", nil
	}
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return "", fmt.Errorf("build path %q must be relative to the repository root", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("build path %q leaves the repository root", p)
	}
	return c, nil
}

// kustomizationNames are the file names kustomize recognizes, in its order.
var kustomizationNames = [...]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// kustomizationIn returns the name of the kustomization file in dir, or "".
func kustomizationIn(dir string) string {
	for _, n := range kustomizationNames {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.Mode().IsRegular() {
			return n
		}
	}
	return ""
}

func isKustomizationName(n string) bool {
	for _, k := range kustomizationNames {
		if n == k {
			return true
		}
	}
	return false
}

// buildPlain reads every YAML file under rel.
func buildPlain(root, rel string, cfg buildConfig) ([]Object, []Problem, error) {
	var objs []Object
	var problems []Problem
	isYAML := func(file string) bool {
		ext := path.Ext(file)
		return (ext == ".yaml" || ext == ".yml") && !isKustomizationName(path.Base(file))
	}
	err := walkFiles(root, rel, cfg, isYAML, func(file string, data []byte) error {
		docs, _ := splitDocuments(file, data) // per-document errors are in docs[i].err
		for i := range docs {
			d := &docs[i]
			switch {
			case d.err != nil:
				problems = append(problems, problemOf(ReasonInvalidYAML, d.err))
				continue
			case d.root == nil || isNull(d.root):
				continue
			}
			o, p := readNode(file, d.root, d.offset, d.raw)
			objs, problems = append(objs, o...), append(problems, p...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(objs, func(a, b Object) int { return compareOrigins(a.Origin, b.Origin) })
	slices.SortStableFunc(problems, func(a, b Problem) int { return compareOrigins(a.Origin, b.Origin) })
	return objs, problems, nil
}

// compareOrigins orders origins by file, then line.
func compareOrigins(a, b Origin) int {
	return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
}

// readNode reads the object node n of file (offset: the file lines before
// its document; raw: its text, nil to encode n) into Objects: one, or a
// List's items, each read the same way.
func readNode(file string, n *yaml.Node, offset int, raw []byte) ([]Object, []Problem) {
	if n.Kind != yaml.MappingNode {
		_, err := identify(file, n, offset)
		return nil, []Problem{problemOf(ReasonNotAnObject, err)}
	}
	if items := lookup(n, "items"); items != nil && items.Kind == yaml.SequenceNode && isListKind(lookupString(n, "kind")) {
		var objs []Object
		var problems []Problem
		for _, item := range items.Content {
			if isNull(item) {
				continue
			}
			o, p := readNode(file, item, offset, nil)
			objs, problems = append(objs, o...), append(problems, p...)
		}
		return objs, problems
	}
	id, err := identify(file, n, offset)
	if err != nil {
		p := problemOf(ReasonMissingField, err)
		p.Kind, p.Namespace, p.Name = lookupString(n, "kind"), lookupString(n, "metadata", "namespace"), lookupString(n, "metadata", "name")
		return nil, []Problem{p}
	}
	problems := duplicateKeys(file, n, offset)
	for i := range problems {
		problems[i].Kind, problems[i].Namespace, problems[i].Name = id.kind, id.namespace, id.name
	}
	if raw == nil {
		b, err := yaml.Marshal(n)
		if err != nil {
			return nil, append(problems, Problem{
				Origin: Origin{File: file, Line: n.Line + offset}, Reason: ReasonInvalidYAML,
				Kind: id.kind, Namespace: id.namespace, Name: id.name, Message: fmt.Sprintf("encoding list item: %v", err),
			})
		}
		raw = b
	}
	return []Object{{
		APIVersion: id.apiVersion,
		Kind:       id.kind,
		Name:       id.name,
		Namespace:  id.namespace,
		YAML:       raw,
		Origin:     Origin{File: file, Line: n.Line + offset},
		Lines:      fieldLines(n, offset),
	}}, problems
}

// walkFiles calls fn, in lexical order, for every regular file under rel
// (slash-separated, relative to root) that keep accepts, with its
// root-relative path and content. Hidden files and directories are
// skipped; symbolic links are followed only to regular files inside root.
// A file over cfg.maxFileBytes, or one that takes the total over
// cfg.maxBytes, is refused by its size before it is read.
func walkFiles(root, rel string, cfg buildConfig, keep func(file string) bool, fn func(file string, data []byte) error) error {
	var total int64
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("resolving build root: %w", err)
	}
	start := filepath.Join(root, filepath.FromSlash(rel))
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walking %s: %w", rel, err)
		}
		if p != start && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		r, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("walking %s: %w", rel, err)
		}
		file := filepath.ToSlash(r)
		if !keep(file) {
			return nil
		}
		var fi fs.FileInfo
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling link: nothing to read
			}
			fi, err = os.Stat(target)
			if err != nil || !fi.Mode().IsRegular() || !within(realRoot, target) {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		} else if fi, err = d.Info(); err != nil {
			return fmt.Errorf("reading %s: %w", file, err)
		}
		data, err := readCapped(p, file, fi.Size(), &total, cfg)
		if err != nil {
			return err
		}
		return fn(file, data)
	})
}

// readCapped reads the file at p (file is its root-relative name) after
// checking its size against the per-file cap and, added to *total, the
// total cap. It reads at most the cap, should the file grow meanwhile.
func readCapped(p, file string, size int64, total *int64, cfg buildConfig) ([]byte, error) {
	tooLarge := func(size int64) error {
		return &BuildError{File: file, Err: fmt.Errorf("%w: %d bytes, over the limit of %d", ErrFileTooLarge, size, cfg.maxFileBytes)}
	}
	if size > cfg.maxFileBytes {
		return nil, tooLarge(size)
	}
	if *total += size; *total > cfg.maxBytes {
		return nil, fmt.Errorf("%w: the files read add up to more than %d bytes (reached at %s)", ErrRepoTooLarge, cfg.maxBytes, file)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, cfg.maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if int64(len(data)) > cfg.maxFileBytes {
		return nil, tooLarge(int64(len(data)))
	}
	return data, nil
}

// within reports whether p is root or below it.
func within(root, p string) bool {
	r, err := filepath.Rel(root, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

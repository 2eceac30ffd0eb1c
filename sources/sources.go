// Package sources fetches Revisions of a policy repository and builds them
// into Objects that keep their origin (file and line).
//
// It owns the first steps of gitmesh's data flow (see docs/architecture.md): fetching
// (sources/git), verification, and kustomize build (Build). It never
// compiles or validates policy; that is the compiler's job.
package sources

import (
	"context"
	"errors"
	"fmt"
)

// Sentinels for size limits, checked with errors.Is. Both are refused
// before the offending files are read, so a caller can report them (for
// example with the Ready reason ArtifactTooLarge) rather than run out of
// memory.
var (
	// ErrRepoTooLarge: a revision's files add up to more than the limit
	// (git.WithMaxRepoSize, or Build's WithMaxBytes).
	ErrRepoTooLarge = errors.New("repository too large")
	// ErrFileTooLarge: one file is larger than Build's per-file limit
	// (WithMaxFileBytes).
	ErrFileTooLarge = errors.New("file too large")
)

// ErrUnverified: a source was asked to verify revisions (git.WithVerify)
// and the one it fetched carries no valid signature by a trusted key. It
// was refused before checkout; callers report it (Ready reason
// VerificationFailed) and keep serving the last good revision.
var ErrUnverified = errors.New("commit signature not verified")

// Source fetches the newest Revision of a policy repository.
type Source interface {
	// Fetch returns the Artifact of the revision the source currently
	// points at (branch head, newest tag in a semver range, ...). It is
	// cheap to call repeatedly: implementations reuse earlier clones.
	// Fetch must be safe to call from one goroutine at a time.
	Fetch(ctx context.Context) (*Artifact, error)
}

// Artifact is one Revision's files, as sources hands them over.
type Artifact struct {
	// Revision is written `<ref>@sha1:<40 hex>`, e.g. `main@sha1:3f2c...`,
	// as Flux writes it.
	Revision string
	// Dir is the root of the checked-out work tree on local disk. It stays
	// valid until the next Fetch of the same Source.
	Dir string
}

// Origin is where an Object came from.
type Origin struct {
	// File is the path of the YAML file, relative to the repository root
	// (e.g. "policy/reviews.yaml").
	File string `json:"file"`
	// Line is the 1-based line of the document's first line in File
	// (0 when unknown).
	Line int `json:"line"`
}

// String returns "file:line" (or "file" when the line is unknown).
func (o Origin) String() string {
	if o.Line <= 0 {
		return o.File
	}
	return fmt.Sprintf("%s:%d", o.File, o.Line)
}

// Object is one YAML document after kustomize build, with its Origin.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	// Namespace is metadata.namespace as written ("" when absent; the
	// compiler applies the default).
	Namespace string `json:"namespace,omitempty"`
	// YAML is the document as built (after kustomize transformations),
	// including apiVersion, kind and metadata.
	YAML []byte `json:"yaml"`
	// Origin is where the document was written.
	Origin Origin `json:"origin"`
	// Lines maps a field path to the 1-based line of that field in
	// Origin.File, when known. Paths are dotted with list indexes in
	// brackets, rooted at the document: "spec.http[0].route[1].destination.subset".
	// It may be nil; use Object.Line to look up with fallback.
	Lines map[string]int `json:"lines,omitempty"`
}

// Line returns the line of the field at path, falling back to the nearest
// enclosing field with a known line, then to the document's line.
func (o *Object) Line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := o.Lines[p]; ok && l > 0 {
			return l
		}
	}
	return o.Origin.Line
}

// At returns the Origin of the field at path (see Line).
func (o *Object) At(path string) Origin {
	return Origin{File: o.Origin.File, Line: o.Line(path)}
}

// parentPath returns the path one level up: "a.b[1].c" -> "a.b[1]" -> "a.b" -> "a" -> "".
func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		switch p[i] {
		case '.':
			return p[:i]
		case '[':
			return p[:i]
		}
	}
	return ""
}

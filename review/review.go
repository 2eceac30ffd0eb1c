package review

import (
	"errors"
	"fmt"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
)

// Change kinds of an object, a field or an xDS resource.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Side is one Revision to compare, built and parsed as the controller
// would. Load builds one.
type Side struct {
	// Revision is written "<ref>@sha1:<hex>" ("worktree" for files on disk).
	Revision string
	// Objects are the built objects (nil when Err is set).
	Objects []sources.Object
	// Policy is the parsed policy (nil when Err is set).
	Policy *compiler.Policy
	// Diagnostics are the analyzers' findings on Policy.
	Diagnostics compiler.Diagnostics
	// Err is why the side could not be fetched or built, or nil. A
	// *sources.BuildError names file and line.
	Err error
}

// Load builds the directory path inside dir (the work tree root of
// revision) with sources.Build and parses it with compiler.Parse. A build
// failure is recorded in Side.Err, not returned: a Report still says what
// went wrong.
func Load(revision, dir, path, namespace string) *Side {
	s := &Side{Revision: revision}
	objs, problems, err := sources.Build(dir, path)
	if err != nil {
		s.Err = fmt.Errorf("building %s: %w", revision, err)
		return s
	}
	s.Objects = objs
	s.Policy, s.Diagnostics = compiler.Parse(objs, compiler.WithDefaultNamespace(namespace), compiler.WithProblems(problems))
	return s
}

// Failed returns a Side that could not be fetched, with err as the reason.
func Failed(revision string, err error) *Side {
	return &Side{Revision: revision, Err: err}
}

// Options configures Compare.
type Options struct {
	// Namespace is the namespace of objects that name none. Default
	// compiler.DefaultNamespace.
	Namespace string
	// Classes are the proxy classes to compile for. If empty, they are
	// derived from the policy of both sides (see DeriveClasses).
	Classes []Class
	// Live, when not nil, are the live fleet's classes (see LiveClasses):
	// their proxies are counted into Classes (see WithLiveCounts) and the
	// blast radius counts proxies.
	Live []Class
	// BaseIsLive says the base is the revision the fleet runs now
	// (`gitmesh diff --live`); renderers say so.
	BaseIsLive bool
}

// Report is what a change does: Compare builds it, the Write methods
// render it.
type Report struct {
	// Base and Head describe the two sides.
	Base SideInfo `json:"base"`
	Head SideInfo `json:"head"`
	// BaseIsLive says Base is what the fleet runs now.
	BaseIsLive bool `json:"baseIsLive,omitempty"`
	// Objects are the policy objects that differ, by kind, namespace, name.
	Objects []ObjectDiff `json:"objects"`
	// Classes is the xDS diff of every proxy class compiled, in class
	// order, including classes whose config does not change.
	Classes []ClassDiff `json:"classes"`
	// Diagnostics are the analyzer findings new in head and fixed by it.
	Diagnostics DiagnosticsDiff `json:"diagnostics"`
	// Rollout is how head would reach the fleet.
	Rollout *RolloutSummary `json:"rollout,omitempty"`
	// Blast is how much of the fleet the change touches.
	Blast BlastRadius `json:"blastRadius"`
}

// SideInfo summarizes one side of a Report.
type SideInfo struct {
	// Revision is "<ref>@sha1:<hex>" or "worktree".
	Revision string `json:"revision"`
	// Objects is how many objects the side built to.
	Objects int `json:"objects"`
	// Errors and Warnings count the side's diagnostics.
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	// Error is why the side could not be fetched or built ("" when it was).
	Error string `json:"error,omitempty"`
	// Origin is the file and line of Error, when known.
	Origin *sources.Origin `json:"origin,omitempty"`
}

// BlastRadius is how much of the fleet a change touches.
type BlastRadius struct {
	// Classes is how many proxy classes get different config, of Total.
	Classes int `json:"classes"`
	Total   int `json:"total"`
	// Live says Proxies and LiveTotal come from the controller.
	Live bool `json:"live"`
	// Proxies is how many connected proxies get different config, of
	// LiveTotal (only when Live).
	Proxies   int `json:"proxies,omitempty"`
	LiveTotal int `json:"liveTotal,omitempty"`
}

// Compare builds the Report of going from base to head. It returns an error
// only when a policy that parsed cannot be compiled (a compiler bug); a side
// that could not be fetched or built is reported in the Report.
func Compare(base, head *Side, opts Options) (*Report, error) {
	if base == nil || head == nil {
		return nil, errors.New("comparing: nil side")
	}
	ns := opts.Namespace
	if ns == "" {
		ns = compiler.DefaultNamespace
	}
	r := &Report{Base: sideInfo(base), Head: sideInfo(head), BaseIsLive: opts.BaseIsLive}
	if base.Err != nil || head.Err != nil {
		r.Objects, r.Classes = []ObjectDiff{}, []ClassDiff{}
		r.Diagnostics = DiagnosticsDiff{New: compiler.Diagnostics{}, Fixed: compiler.Diagnostics{}}
		return r, nil
	}
	var err error
	if r.Objects, err = diffObjects(base.Objects, head.Objects, ns); err != nil {
		return nil, err
	}
	classes := opts.Classes
	if len(classes) == 0 {
		classes = DeriveClasses(ns, base, head)
	}
	if opts.Live != nil {
		classes = WithLiveCounts(classes, opts.Live)
	}
	if r.Classes, err = diffClasses(base.Policy, head.Policy, classes); err != nil {
		return nil, err
	}
	r.Diagnostics = diffDiagnostics(base.Diagnostics, head.Diagnostics)
	r.Rollout = summarizeRollout(base.Policy, head.Policy, r.Classes)
	r.Blast = blastRadius(r.Classes, opts.Live != nil)
	return r, nil
}

func sideInfo(s *Side) SideInfo {
	info := SideInfo{Revision: s.Revision, Objects: len(s.Objects)}
	for _, d := range s.Diagnostics {
		switch d.Severity {
		case compiler.SeverityError:
			info.Errors++
		case compiler.SeverityWarning:
			info.Warnings++
		}
	}
	if s.Err != nil {
		info.Error = s.Err.Error()
		var be *sources.BuildError
		if errors.As(s.Err, &be) {
			o := be.Origin()
			info.Origin = &o
		}
	}
	return info
}

func blastRadius(classes []ClassDiff, live bool) BlastRadius {
	b := BlastRadius{Total: len(classes), Live: live}
	for _, c := range classes {
		if live {
			b.LiveTotal += c.Proxies
		}
		if len(c.Changes) == 0 {
			continue
		}
		b.Classes++
		if live {
			b.Proxies += c.Proxies
		}
	}
	return b
}

// Failed reports whether a side could not be fetched or built, or head has
// analyzer errors that base does not: `gitmesh diff` exits 2.
func (r *Report) Failed() bool {
	return r.Base.Error != "" || r.Head.Error != "" || r.Diagnostics.NewErrors > 0
}

// Changed reports whether any policy object or any proxy class's config
// differs: `gitmesh diff` exits 1. A commit that only edits comments or
// formatting changes nothing.
func (r *Report) Changed() bool {
	if len(r.Objects) > 0 {
		return true
	}
	for _, c := range r.Classes {
		if len(c.Changes) > 0 {
			return true
		}
	}
	return false
}

// ExitCode is the exit code `gitmesh diff` documents: 0 no change, 1
// changes, 2 a side failed or head has new analyzer errors.
func (r *Report) ExitCode() int {
	switch {
	case r.Failed():
		return 2
	case r.Changed():
		return 1
	}
	return 0
}

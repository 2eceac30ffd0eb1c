// Package review is gitmesh's pull-request review logic: what a change to
// the mesh policy will do to the fleet, not only its YAML diff.
//
// Compare takes two Sides (a base and a head Revision, each built with
// sources.Build and parsed with compiler.Parse, exactly as the controller
// does) and returns a Report: a semantic diff per policy object, the xDS
// diff per ProxyClass (routes, clusters, endpoints, listeners), the
// analyzer diagnostics new in head and fixed by it, how the rollout would
// run, and the blast radius. The Report renders as text, markdown (for a
// sticky PR comment) or JSON, in a stable order, and never shows secrets.
//
// Repo resolves revisions (branch, remote-tracking branch, tag, SHA,
// HEAD~1) of a local Git repository with go-git and materializes them in
// a temporary directory, or fetches them from a URL with sources/git.
//
// The package also renders plain diagnostics for `gitmesh validate` in CI
// formats (GitHub annotations, JUnit XML).
package review

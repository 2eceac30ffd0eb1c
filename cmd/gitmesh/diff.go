package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/review"
)

// diffFlags are the flags of `gitmesh diff`.
type diffFlags struct {
	repo, base, head, path, namespace string
	worktree, live, exitCode          bool
	output, controller                string
	classes                           []string
}

func newDiffCmd() *cobra.Command {
	f := diffFlags{}
	cmd := &cobra.Command{
		Use:   "diff [--repo DIR|URL] --base REF [--head REF|--worktree] [--path DIR]",
		Short: "Show what a change does to the fleet: policy, xDS, analyzers, rollout",
		Long: `Build and compile two revisions of the policy repository exactly as the
controller does, and report what changes between them: each policy object
(field by field, with file:line), the xDS config of each proxy class (routes,
clusters, endpoints), the analyzer findings new in head and fixed by it, and
how the rollout would run (the head's RolloutPolicy) and how far it reaches.

REF is anything git resolves in a local repository: a branch, a
remote-tracking branch (origin/main), a tag, a SHA, HEAD~1. Without --head,
head is the work tree (the files on disk). For a URL, REF is a branch,
refs/tags/NAME or a 40-hex commit.

Proxy classes are derived from the policy (a sidecar class per service that a
ServiceEntry with a workloadSelector declares, "any sidecar", and a gateway
class per Gateway selector) or named with --proxy-class; --controller counts
the live proxies in each class (by role, namespace and service), so the
report says how many proxies a change reaches.
--live diffs head against the revision the fleet runs now (the controller's
lastAppliedRevision, resolved in --repo).

In CI:
  gitmesh diff --repo . --base origin/main --head HEAD --format markdown > comment.md

Exit codes: 0 no change, 1 changes, 2 a revision could not be fetched or
built, or head has analyzer errors that base has not (--exit-code=false:
0 unless the diff itself could not be made).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiff(cmd, f)
		},
	}
	outputFlag(cmd, &f.output, review.FormatText, review.FormatMarkdown, review.FormatJSON)
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", ".", "policy repository: a local directory in a Git work tree, or a URL")
	fl.StringVar(&f.base, "base", "", "base revision (e.g. main, origin/main, v1.2.0, HEAD~1, a SHA)")
	fl.StringVar(&f.head, "head", "", "head revision (default: the work tree)")
	fl.BoolVar(&f.worktree, "worktree", false, "head is the work tree, with uncommitted changes (the default without --head)")
	fl.StringVar(&f.path, "path", "", "policy directory inside the repository (a kustomization or plain YAML)")
	fl.StringVar(&f.namespace, "namespace", nodemeta.DefaultNamespace, "namespace of objects that name none")
	fl.StringArrayVar(&f.classes, "proxy-class", nil, "proxy class to compile for, repeatable: role=sidecar,service=reviews,namespace=default")
	fl.StringVar(&f.controller, "controller", envOr("GITMESH_CONTROLLER", ""), "controller admin API URL: take proxy classes and counts from the live fleet (default $GITMESH_CONTROLLER; with --live, http://"+defaultAdminAddr+")")
	fl.BoolVar(&f.live, "live", false, "diff against the revision the fleet runs now (needs --controller, default http://"+defaultAdminAddr+")")
	fl.BoolVar(&f.exitCode, "exit-code", true, "exit 1 on changes and 2 on new analyzer errors; false: exit 0 whenever the diff was made")
	return cmd
}

func runDiff(cmd *cobra.Command, f diffFlags) error {
	ctx := cmd.Context()
	switch {
	case f.head != "" && f.worktree:
		return &exitError{2, errors.New("give --head or --worktree, not both")}
	case f.base == "" && !f.live:
		return &exitError{2, errors.New("--base is required (or --live)")}
	case f.base != "" && f.live:
		return &exitError{2, errors.New("--live diffs against the live revision: drop --base")}
	}
	if f.live && f.controller == "" {
		f.controller = "http://" + defaultAdminAddr
	}
	opts := review.Options{Namespace: f.namespace}
	for _, s := range f.classes {
		c, err := review.ParseClass(s)
		if err != nil {
			return &exitError{2, err}
		}
		opts.Classes = append(opts.Classes, c)
	}
	repo, err := review.OpenRepo(f.repo)
	if err != nil {
		return &exitError{2, err}
	}

	baseRef, baseLabel := f.base, ""
	if f.controller != "" {
		st, err := fetchStatus(ctx, f.controller)
		if err != nil {
			return &exitError{2, err}
		}
		opts.Live = review.LiveClasses(st)
		if f.live {
			if st.LastAppliedRevision == "" {
				return &exitError{2, errors.New("the controller has applied no revision yet")}
			}
			if baseRef, err = review.LiveSHA(st.LastAppliedRevision); err != nil {
				return &exitError{2, err}
			}
			baseLabel, opts.BaseIsLive = st.LastAppliedRevision, true
		}
	}
	headRef := f.head
	if headRef == "" {
		headRef = review.WorktreeRevision
	}

	base := repo.Load(ctx, baseRef, baseLabel, f.path, f.namespace)
	head := repo.Load(ctx, headRef, "", f.path, f.namespace)
	rep, err := review.Compare(base, head, opts)
	if err != nil {
		return &exitError{2, err}
	}
	if err := rep.Write(cmd.OutOrStdout(), f.output); err != nil {
		return &exitError{2, fmt.Errorf("writing report: %w", err)}
	}
	code := rep.ExitCode()
	if !f.exitCode && !(rep.Base.Error != "" || rep.Head.Error != "") {
		code = 0
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

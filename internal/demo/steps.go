package demo

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// Info is where a running demo is: what the banner prints and what the
// steps use.
type Info struct {
	// Dir is the demo directory, RepoDir its policy repository, LogFile
	// where the components log, TokenFile the admin API's bearer token.
	Dir, RepoDir, LogFile, TokenFile string
	// PortBase is the base of the port layout in use; Moved is set when
	// the requested base was taken and this one was found instead.
	PortBase int
	Moved    bool
	// AdminURL is the controller's admin API (and web view), XDSAddr its
	// xDS server, Outbound the frontend sidecar's outbound listener.
	AdminURL, XDSAddr, Outbound string
	// ProxyAdmins are the sidecars' admin addresses (/ready, /metrics),
	// in the order of Sidecars.
	ProxyAdmins []string
	// Sidecars are the demo's proxies.
	Sidecars []string
	// Seeded is set when this run created the policy repository.
	Seeded bool
	// Login is the line the Config's Login hook returned, if any.
	Login string
	// Took is how long the start took.
	Took time.Duration
}

// Step is one numbered step of the tour `gitmesh up` prints.
type Step struct {
	// Title says what the step does.
	Title string
	// Commands are shell commands, run in order from any directory.
	Commands []string
	// Expect says what the user sees.
	Expect string
}

// Step titles the tests look up.
const (
	StepRequest = "Send a request through the frontend's sidecar"
	StepShift   = "Shift reviews from v1 to v2 and watch the rollout"
	StepBreak   = "Break it: make reviews answer 503 and watch the automatic rollback"
	StepFix     = "Fix it: revert the bad commit"
)

// FaultLine is the line the break-it step appends to reviews.yaml: a fault
// on the VirtualService's route (the file's last) that aborts every request
// with 503.
const FaultLine = "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}"

// Steps returns the tour for a running demo; cli is how the user calls the
// gitmesh CLI (e.g. "gitmesh" or "go run ./cmd/gitmesh").
func Steps(info Info, cli string) []Step {
	reviews := filepath.Join(info.RepoDir, "reviews.yaml")
	git := "git -C " + shellQuote(info.RepoDir)
	curl := fmt.Sprintf("curl -H 'Host: frontend' http://%s/", info.Outbound)
	return []Step{
		{
			Title:    StepRequest,
			Commands: []string{curl},
			Expect:   "the frontend's answer, with the version of reviews that served it: reviews v1 (reviews-v1-1)",
		},
		{
			Title: StepShift,
			Commands: []string{
				"sed -i 's/subset: v1/subset: v2/' " + shellQuote(reviews),
				git + " commit -qam 'reviews: all traffic to v2'",
				cli + " status --watch",
				curl,
			},
			Expect: "the canary wave (the frontend's sidecar) bakes 5s under analysis, then everyone runs it; curl answers reviews v2",
		},
		{
			Title: StepBreak,
			Commands: []string{
				fmt.Sprintf("printf '%%s\\n' '%s' >> %s", FaultLine, shellQuote(reviews)),
				git + " commit -qam 'reviews: abort every request with 503'",
				cli + " status --watch",
				cli + " history",
				curl,
			},
			Expect: "the canary's success rate drops below 99%, two checks later (about 2s) the rollout is RolledBack; history says why, and curl is answered as before",
		},
		{
			Title: StepFix,
			Commands: []string{
				git + " revert --no-edit HEAD",
				cli + " status --watch",
				cli + " history",
			},
			Expect: "the revert is a new commit: it rolls out and is promoted",
		},
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@=+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printBanner writes what runs where and the tour.
func printBanner(w io.Writer, info Info, steps []Step) {
	how := "reused"
	if info.Seeded {
		how = "created from examples/quickstart"
	}
	ports := fmt.Sprintf("%d-%d", info.PortBase, info.PortBase+offProxyAdmin+len(info.Sidecars)-1)
	if info.Moved {
		ports += " (the default layout was taken; --port-base forces one)"
	}
	fmt.Fprintf(w, `
================================================================================
 gitmesh is up (ready in %s)
================================================================================

  web view + admin API  %s
  controller metrics    %s/metrics
  xDS                   %s
  sidecars              %s
  sidecar metrics       http://%s/metrics (Istio names), ...
  ports                 %s
  policy repository     %s (%s; polled every second)
  admin token           %s
  logs                  %s
`, info.Took.Round(time.Millisecond), info.AdminURL, info.AdminURL, info.XDSAddr,
		strings.Join(info.Sidecars, ", "), info.ProxyAdmins[0], ports, info.RepoDir, how, info.TokenFile, info.LogFile)
	if info.Login != "" {
		fmt.Fprintf(w, "  client                %s\n", info.Login)
	}
	fmt.Fprintln(w, "\nIn another terminal, from any directory:")
	for i, s := range steps {
		fmt.Fprintf(w, "\n%d. %s\n\n", i+1, s.Title)
		for _, c := range s.Commands {
			fmt.Fprintf(w, "     %s\n", c)
		}
		if s.Expect != "" {
			fmt.Fprintf(w, "\n   -> %s\n", s.Expect)
		}
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything; the repository and state stay in %s.\n", info.Dir)
}

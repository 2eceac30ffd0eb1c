// Package e2etest holds the helpers gitmesh's end-to-end test packages
// (e2e, e2e/kube, e2e/helm) share: a test logger, a git remote on a
// loopback git server pushed to with the git CLI, backends and bundled
// proxies that stop with the test, traffic counters and polling waits with
// deadlines.
//
// Every helper takes the test's testing.TB and registers its own cleanup;
// the package keeps no state of its own.
package e2etest

import "time"

// Deadlines of the harness: every wait has one, so a test whose feature
// does not work fails, naming what it waited for, instead of hanging until
// go test's -timeout kills the whole binary.
const (
	// StopTimeout bounds how long a cancelled proxy or test server may
	// take to stop.
	StopTimeout = 10 * time.Second
	// GitCommandTimeout bounds one git CLI command (a push to the
	// loopback server takes milliseconds).
	GitCommandTimeout = time.Minute
	// HTTPTimeout bounds one HTTP call of a test to a proxy or the
	// controller.
	HTTPTimeout = 5 * time.Second
)

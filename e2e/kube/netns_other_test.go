//go:build !linux

package kube

import (
	"fmt"
	"os"
)

// testAddrs: see netns_linux_test.go.
var testAddrs = []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"}

// inNetNS: network namespaces are Linux's; the package is skipped (and
// fails when CI is "true").
func inNetNS() int {
	if os.Getenv("CI") == "true" {
		fmt.Fprintln(os.Stderr, "e2e/kube: FAIL: needs Linux network namespaces")
		return 1
	}
	fmt.Fprintln(os.Stderr, "e2e/kube: SKIP: needs Linux network namespaces")
	return 0
}

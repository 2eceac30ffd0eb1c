//go:build !linux

package promtest

import "os/exec"

// dieWithParent is a no-op where the kernel has no parent-death signal;
// t.Cleanup still stops the process.
func dieWithParent(*exec.Cmd) {}

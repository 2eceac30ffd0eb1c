//go:build linux

package kube

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// The API server refuses EndpointSlice addresses in 127.0.0.0/8 (and
// link-local ones), so the backends cannot listen on the loopback
// addresses the rest of the e2e tests use. Instead the test binary runs
// itself again in a network namespace of its own, where it gives lo the
// addresses of testAddrs (RFC 2544's benchmarking range, which the API
// server accepts) for backends to listen on. Everything else (the
// control plane, the git server, controller and proxies) runs in that
// namespace too, on 127.0.0.1, and nothing leaves it or touches the
// machine's network.

// netnsEnv marks the process that runs inside the namespace.
const netnsEnv = "GITMESH_E2E_KUBE_NETNS"

// testAddrs are the backend addresses lo gets in the namespace.
var testAddrs = []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"}

// inNetNS runs the test binary again in a new network namespace (and a
// user namespace mapping the caller to root there when it is not root)
// and returns its exit status, or returns -1 when the caller is already
// inside. When the namespace cannot be created it prints why and returns
// 0 (skip), or 1 when CI is "true".
func inNetNS() int {
	if os.Getenv(netnsEnv) != "" {
		if err := setupLoopback(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e/kube: setting up the test network namespace: %v\n", err)
			return 1
		}
		return -1
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return skipOrFail("the ip command (iproute2) is required to set up a network namespace")
	}
	// As root a network namespace is enough; without root (or where
	// root may not create one, in some containers) a user namespace that
	// maps the caller to root comes with it.
	var attempts []*syscall.SysProcAttr
	if os.Geteuid() == 0 {
		attempts = append(attempts, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL})
	}
	attempts = append(attempts, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET | syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	})
	var errs []error
	for _, attr := range attempts {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.SysProcAttr = attr
		if err := cmd.Start(); err != nil {
			errs = append(errs, err) // the namespace could not be created
			continue
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit) && exit.Exited():
			return exit.ExitCode()
		default:
			fmt.Fprintf(os.Stderr, "e2e/kube: test binary in its network namespace: %v\n", err)
			return 1
		}
	}
	return skipOrFail(fmt.Sprintf("cannot create a network namespace (needs root or unprivileged user namespaces): %v", errors.Join(errs...)))
}

// setupLoopback brings lo up, gives it testAddrs and makes it the
// default route: kube-apiserver picks its advertise address from the
// default route's interface and will not start without one. Nothing
// leaves the namespace: lo is its only interface.
func setupLoopback() error {
	cmds := [][]string{{"link", "set", "lo", "up"}}
	for _, a := range testAddrs {
		cmds = append(cmds, []string{"addr", "add", a + "/32", "dev", "lo"})
	}
	cmds = append(cmds, []string{"route", "add", "default", "dev", "lo"})
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// skipOrFail prints why the package cannot run and returns its exit
// status: 0 (skipped) locally, 1 when CI is "true".
func skipOrFail(why string) int {
	if os.Getenv("CI") == "true" {
		fmt.Fprintf(os.Stderr, "e2e/kube: FAIL: %s (CI=true requires these tests)\n", why)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e/kube: SKIP: %s\n", why)
	return 0
}

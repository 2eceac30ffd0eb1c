//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// netns is a network namespace a test created, joined to the host by a
// veth pair: hostIP on the host side, nsIP inside. Nothing else of the
// host's network is touched; the namespace (and with it the veth pair)
// is deleted when the test ends.
type netns struct {
	t            testing.TB
	name         string
	hostIf, nsIf string
	hostIP, nsIP string
	path         string // /var/run/netns/<name>
}

// requireNetAdmin skips the test unless it runs as root with ip and
// iptables; with CI=true it fails instead, so CI never silently skips.
func requireNetAdmin(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("needs %s (network namespaces and iptables; Debian packages iproute2 and iptables)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// newNetns creates a namespace and a veth pair on a /30 of 198.18.0.0/15
// (RFC 2544's benchmarking range) that no host interface uses.
func newNetns(t testing.TB) *netns {
	t.Helper()
	requireNetAdmin(t)
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -o addr: %v\n%s", err, out)
	}
	k := os.Getpid() % 250
	for strings.Contains(string(out), fmt.Sprintf("198.18.%d.", k)) {
		k = (k + 1) % 250
	}
	n := &netns{
		t: t, name: fmt.Sprintf("gitmesh-capture-%d", k),
		hostIf: fmt.Sprintf("gmc%dh", k), nsIf: fmt.Sprintf("gmc%dn", k),
		hostIP: fmt.Sprintf("198.18.%d.1", k), nsIP: fmt.Sprintf("198.18.%d.2", k),
	}
	n.path = "/var/run/netns/" + n.name
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.name).Run()
		exec.Command("ip", "link", "del", n.hostIf).Run() // gone with its peer, normally
	})
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.name},
		{"addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"netns", "exec", n.name, "ip", "addr", "add", n.nsIP + "/30", "dev", n.nsIf},
		{"netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up"},
		{"netns", "exec", n.name, "ip", "link", "set", "lo", "up"},
		// Service addresses are routed on-link, never through a gateway:
		// whatever is not redirected stays on the veth.
		{"netns", "exec", n.name, "ip", "route", "add", "10.96.0.0/16", "dev", n.nsIf},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			msg := fmt.Sprintf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip("cannot set up a network namespace here: " + msg)
		}
	}
	return n
}

// exec runs a command inside the namespace as root and returns its
// output; it fails the test if the command fails.
func (n *netns) exec(args ...string) string {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("in %s: %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs f on an OS thread that has joined the namespace: sockets f
// creates, and processes it starts, belong to the namespace.
func (n *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked (and so dies with the goroutine)
		// unless it is back in the host's namespace.
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer host.Close()
		target, err := os.Open(n.path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			errc <- fmt.Errorf("joining %s: %w", n.name, err)
			return
		}
		ferr := f()
		if setns(host) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// dial is a DialContext whose sockets live in the namespace: an app in
// the pod.
func (n *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listen opens a listener inside the namespace.
func (n *netns) listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// start starts cmd inside the namespace as uid (and gid) uid.
func (n *netns) start(cmd *exec.Cmd, uid uint32) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: uid},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return n.do(cmd.Start)
}

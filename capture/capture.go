// Package capture installs and removes the iptables rules that make a
// pod's TCP traffic go through its gitmesh sidecar, as Istio's
// istio-iptables does for Envoy: outbound connections are REDIRECTed to
// the sidecar's outbound port and inbound ones to its inbound port, in
// the nat table of the network namespace the command runs in (an init
// container's, which is the pod's), except the proxy's own traffic (its
// uid), loopback and what the configuration excludes.
//
// The rules live in chains of their own (GITMESH_INBOUND,
// GITMESH_IN_REDIRECT, GITMESH_OUTPUT, GITMESH_REDIRECT) reached by one
// jump from PREROUTING and one from OUTPUT, so installing twice leaves
// one copy and Cleanup removes exactly what Install added. Install
// generates the whole ruleset and loads it with one iptables-restore
// --noflush, atomically, as Istio does; see docs/capture.md.
package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Chains gitmesh owns in the nat table.
const (
	ChainInbound    = "GITMESH_INBOUND"
	ChainInRedirect = "GITMESH_IN_REDIRECT"
	ChainOutput     = "GITMESH_OUTPUT"
	ChainRedirect   = "GITMESH_REDIRECT"
)

// Defaults, Istio's.
const (
	DefaultProxyUID     = 1337
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
)

// Config is what to capture. The zero value of a list field captures or
// excludes nothing, except where noted.
type Config struct {
	// ProxyUID is the uid the sidecar runs as; its connections are never
	// redirected (the proxy would loop into itself). Istio's 1337.
	ProxyUID uint32
	// OutboundPort is the port of the sidecar's outbound listener, where
	// outbound TCP goes.
	OutboundPort uint16
	// InboundPort is the port of the sidecar's inbound listener, where
	// inbound TCP goes.
	InboundPort uint16
	// InboundPorts are the destination ports of the inbound connections
	// to capture; nil captures none, AllInbound every port.
	InboundPorts []uint16
	// AllInbound captures inbound TCP to every port but ExcludeInboundPorts
	// (Istio's --inbound-ports "*"); InboundPorts is then ignored.
	AllInbound bool
	// ExcludeInboundPorts are never captured inbound (say, the proxy's
	// admin port, or ssh).
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts are destination ports of outbound connections
	// that bypass the sidecar.
	ExcludeOutboundPorts []uint16
	// IncludeOutboundCIDRs are the destinations captured outbound; nil
	// captures none, AllOutbound every one.
	IncludeOutboundCIDRs []netip.Prefix
	// AllOutbound captures outbound TCP to every destination but
	// ExcludeOutboundCIDRs and loopback (Istio's "*", the default).
	AllOutbound bool
	// ExcludeOutboundCIDRs are destinations that bypass the sidecar.
	ExcludeOutboundCIDRs []netip.Prefix
}

// DefaultConfig captures every TCP connection in and out to Istio's ports.
func DefaultConfig() Config {
	return Config{
		ProxyUID: DefaultProxyUID, OutboundPort: DefaultOutboundPort, InboundPort: DefaultInboundPort,
		AllInbound: true, AllOutbound: true,
	}
}

// Family is an IP family: IPv4 (iptables) or IPv6 (ip6tables).
type Family int

// Families.
const (
	IPv4 Family = iota
	IPv6
)

func (f Family) loopback() string {
	if f == IPv6 {
		return "::1/128"
	}
	return "127.0.0.1/32"
}

func (f Family) holds(p netip.Prefix) bool { return p.Addr().Is4() == (f == IPv4) }

// Validate checks the ports.
func (c Config) Validate() error {
	if c.OutboundPort == 0 || c.InboundPort == 0 {
		return errors.New("checking capture config: the outbound and inbound ports are required")
	}
	for _, ps := range [][]uint16{c.InboundPorts, c.ExcludeInboundPorts, c.ExcludeOutboundPorts} {
		if slices.Contains(ps, 0) {
			return errors.New("checking capture config: port 0 in a port list")
		}
	}
	return nil
}

// Rules returns the iptables-restore input that installs the capture for
// family (without --noflush it would wipe the table; Install passes it).
// It is deterministic: the same Config gives the same text.
func Rules(c Config, f Family) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	rule := func(args ...string) { b.WriteString(strings.Join(args, " ") + "\n") }
	uid := strconv.FormatUint(uint64(c.ProxyUID), 10)
	lo := f.loopback()

	b.WriteString("*nat\n")
	for _, ch := range []string{ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput} {
		rule(":" + ch + " - [0:0]")
	}
	rule("-A", ChainRedirect, "-p tcp -j REDIRECT --to-ports", port(c.OutboundPort))
	rule("-A", ChainInRedirect, "-p tcp -j REDIRECT --to-ports", port(c.InboundPort))

	// Inbound: what arrives from other hosts (PREROUTING never sees
	// locally generated packets).
	if c.AllInbound || len(c.InboundPorts) > 0 {
		rule("-A PREROUTING -p tcp -j", ChainInbound)
	}
	if c.AllInbound {
		for _, p := range c.ExcludeInboundPorts {
			rule("-A", ChainInbound, "-p tcp --dport", port(p), "-j RETURN")
		}
		rule("-A", ChainInbound, "-p tcp -j", ChainInRedirect)
	} else {
		for _, p := range c.InboundPorts {
			if !slices.Contains(c.ExcludeInboundPorts, p) {
				rule("-A", ChainInbound, "-p tcp --dport", port(p), "-j", ChainInRedirect)
			}
		}
	}

	// Outbound, in Istio's order.
	rule("-A OUTPUT -p tcp -j", ChainOutput)
	for _, p := range c.ExcludeOutboundPorts {
		rule("-A", ChainOutput, "-p tcp --dport", port(p), "-j RETURN")
	}
	// The proxy dialling this pod's own address (a service whose endpoint
	// is this pod) goes through loopback: send it to the inbound side, so
	// app -> sidecar outbound -> sidecar inbound -> app.
	rule("-A", ChainOutput, "-o lo ! -d", lo, "-p tcp -m owner --uid-owner", uid, "-j", ChainInRedirect)
	// The app talking to itself over loopback is not captured.
	rule("-A", ChainOutput, "-o lo -m owner ! --uid-owner", uid, "-j RETURN")
	// The proxy's own connections are never captured: no loops.
	rule("-A", ChainOutput, "-m owner --uid-owner", uid, "-j RETURN")
	rule("-A", ChainOutput, "-d", lo, "-j RETURN")
	for _, p := range c.ExcludeOutboundCIDRs {
		if f.holds(p) {
			rule("-A", ChainOutput, "-d", p.Masked().String(), "-j RETURN")
		}
	}
	if c.AllOutbound {
		rule("-A", ChainOutput, "-j", ChainRedirect)
	} else {
		for _, p := range c.IncludeOutboundCIDRs {
			if f.holds(p) {
				rule("-A", ChainOutput, "-d", p.Masked().String(), "-j", ChainRedirect)
			}
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

func port(p uint16) string { return strconv.FormatUint(uint64(p), 10) }

// Runner runs iptables commands. ExecRunner runs the real ones.
type Runner interface {
	// Run runs name with args, stdin as its input, and returns its
	// combined output; err is non-nil when it fails.
	Run(ctx context.Context, stdin string, name string, args ...string) (string, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

var _ Runner = ExecRunner{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func tools(f Family) (iptables, restore string) {
	if f == IPv6 {
		return "ip6tables", "ip6tables-restore"
	}
	return "iptables", "iptables-restore"
}

// Install removes any previous capture (see Cleanup) and loads the rules
// of c for family in one iptables-restore --noflush.
func Install(ctx context.Context, r Runner, c Config, f Family) error {
	rules, err := Rules(c, f)
	if err != nil {
		return err
	}
	if err := Cleanup(ctx, r, f); err != nil {
		return err
	}
	_, restore := tools(f)
	if out, err := r.Run(ctx, rules, restore, "--noflush"); err != nil {
		return fmt.Errorf("loading capture rules with %s: %w: %s", restore, err, strings.TrimSpace(out))
	}
	return nil
}

// Cleanup removes the jumps to gitmesh's chains from PREROUTING and
// OUTPUT and deletes the chains. What is not there is skipped, so it can
// run any number of times; other rules of the table are left alone.
func Cleanup(ctx context.Context, r Runner, f Family) error {
	ipt, _ := tools(f)
	jumps := []struct{ chain, target string }{{"PREROUTING", ChainInbound}, {"OUTPUT", ChainOutput}}
	for _, j := range jumps {
		// Delete until none is left (an older install may have left
		// several).
		for range 100 {
			if _, err := r.Run(ctx, "", ipt, "-w", "-t", "nat", "-D", j.chain, "-p", "tcp", "-j", j.target); err != nil {
				break
			}
		}
	}
	// Flush every chain before deleting any: a chain still referenced by
	// another's rule cannot be deleted.
	var present []string
	for _, ch := range []string{ChainInbound, ChainOutput, ChainInRedirect, ChainRedirect} {
		if _, err := r.Run(ctx, "", ipt, "-w", "-t", "nat", "-n", "-L", ch); err != nil {
			continue // no such chain
		}
		if out, err := r.Run(ctx, "", ipt, "-w", "-t", "nat", "-F", ch); err != nil {
			return fmt.Errorf("flushing %s: %w: %s", ch, err, strings.TrimSpace(out))
		}
		present = append(present, ch)
	}
	for _, ch := range present {
		if out, err := r.Run(ctx, "", ipt, "-w", "-t", "nat", "-X", ch); err != nil {
			return fmt.Errorf("deleting %s: %w: %s", ch, err, strings.TrimSpace(out))
		}
	}
	return nil
}

// ParsePorts reads a comma-separated port list ("" is none).
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("parsing ports: %q is not a port (1-65535)", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// ParseCIDRs reads a comma-separated list of CIDR ranges or addresses
// ("" is none; "*" sets all).
func ParseCIDRs(s string) (prefixes []netip.Prefix, all bool, err error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "*":
			all = true
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, false, fmt.Errorf("parsing CIDR ranges: %q is neither a CIDR range nor an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, all, nil
}

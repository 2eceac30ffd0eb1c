package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/capture"
)

func newProxyInitCmd() *cobra.Command {
	var (
		c                                                  = capture.DefaultConfig()
		inboundPorts, exclIn, exclOut, inclCIDRs, exclCIDR string
		cleanup, dryRun, ipv6                              bool
	)
	cmd := &cobra.Command{
		Use:   "proxy-init [--cleanup] [--exclude-outbound-ports P,..] [--exclude-outbound-cidrs C,..] ...",
		Short: "Install the iptables rules that capture a pod's TCP traffic for its sidecar",
		Long: `Install, in the nat table of the current network namespace, the iptables rules
that redirect outbound TCP to the sidecar's outbound port and inbound TCP to its
inbound port, as Istio's istio-iptables does. Run it in an init container with
the NET_ADMIN capability; the sidecar then runs as --proxy-uid (its own traffic
is never redirected) with --interception-mode REDIRECT. Loopback is never
captured. The rules live in GITMESH_* chains: running it again replaces them,
--cleanup removes them. See docs/capture.md.

  gitmesh proxy-init --exclude-inbound-ports 15000 --exclude-outbound-cidrs 10.0.0.1/32
  gitmesh proxy-init --dry-run
  gitmesh proxy-init --cleanup

Exit codes: 0 done, 1 iptables failed, 2 bad flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			family := capture.IPv4
			if ipv6 {
				family = capture.IPv6
			}
			r := capture.ExecRunner{}
			if cleanup {
				if err := capture.Cleanup(cmd.Context(), r, family); err != nil {
					return &exitError{1, err}
				}
				return nil
			}
			var err error
			parse := func(s string) []uint16 {
				ps, perr := capture.ParsePorts(s)
				if perr != nil && err == nil {
					err = perr
				}
				return ps
			}
			c.AllInbound = strings.TrimSpace(inboundPorts) == "*"
			if !c.AllInbound {
				c.InboundPorts = parse(inboundPorts)
			}
			c.ExcludeInboundPorts = parse(exclIn)
			c.ExcludeOutboundPorts = parse(exclOut)
			// Check the ports' error before ParseCIDRs reuses err: a bad
			// port list must not be dropped silently.
			if err != nil {
				return &exitError{2, err}
			}
			if c.IncludeOutboundCIDRs, c.AllOutbound, err = capture.ParseCIDRs(inclCIDRs); err != nil {
				return &exitError{2, err}
			}
			if c.ExcludeOutboundCIDRs, _, err = capture.ParseCIDRs(exclCIDR); err != nil {
				return &exitError{2, err}
			}
			if c.ProxyUID == 0 {
				return &exitError{2, errors.New("--proxy-uid 0 would exempt every root process from capture")}
			}
			if dryRun {
				rules, err := capture.Rules(c, family)
				if err != nil {
					return &exitError{2, err}
				}
				fmt.Fprint(cmd.OutOrStdout(), rules)
				return nil
			}
			if err := c.Validate(); err != nil {
				return &exitError{2, err}
			}
			if err := capture.Install(cmd.Context(), r, c, family); err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&c.ProxyUID, "proxy-uid", c.ProxyUID, "uid of the sidecar, whose traffic is never redirected")
	f.Uint16Var(&c.OutboundPort, "outbound-port", c.OutboundPort, "port of the sidecar's outbound listener")
	f.Uint16Var(&c.InboundPort, "inbound-port", c.InboundPort, "port of the sidecar's inbound listener")
	f.StringVar(&inboundPorts, "inbound-ports", "*", `destination ports of inbound TCP to capture, comma-separated; "*" is all, "" none`)
	f.StringVar(&exclIn, "exclude-inbound-ports", "", "inbound destination ports never captured (e.g. the proxy's admin port), comma-separated")
	f.StringVar(&exclOut, "exclude-outbound-ports", "", "outbound destination ports that bypass the sidecar, comma-separated")
	f.StringVar(&inclCIDRs, "include-outbound-cidrs", "*", `outbound destinations to capture, comma-separated CIDR ranges; "*" is all`)
	f.StringVar(&exclCIDR, "exclude-outbound-cidrs", "", "outbound destinations that bypass the sidecar, comma-separated CIDR ranges")
	f.BoolVar(&cleanup, "cleanup", false, "remove the rules (the GITMESH_* chains and the jumps to them) instead")
	f.BoolVar(&dryRun, "dry-run", false, "print the iptables-restore input instead of loading it")
	f.BoolVar(&ipv6, "ipv6", false, "write the IPv6 rules (ip6tables) instead of the IPv4 ones")
	return cmd
}

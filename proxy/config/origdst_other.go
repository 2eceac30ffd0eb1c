//go:build !linux

package config

import (
	"net"
	"net/netip"
)

// originalDst is only available on Linux (netfilter); elsewhere no
// connection is redirected.
func originalDst(net.Conn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

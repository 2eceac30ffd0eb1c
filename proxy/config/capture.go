package config

import (
	"net"
	"net/netip"
	"strconv"
)

// Handoff returns the listener that serves c, accepted by lc: when lc
// uses the original destination and c was redirected to it, the listener
// bound (or declared with bind_to_port false) at the original destination
// address, else one at the wildcard address of the same family and port,
// else lc itself, as Envoy's connection handler does. origDst is the
// original destination, "" when c was not redirected (the kernel reports
// no NAT record, or the local address itself).
func (cfg *MeshConfig) Handoff(lc *ListenerConfig, c net.Conn) (target *ListenerConfig, origDst string) {
	if !lc.UseOriginalDst {
		return lc, ""
	}
	ap, ok := originalDst(c)
	if !ok {
		return lc, ""
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local := la.AddrPort()
		if netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) == ap {
			return lc, ""
		}
	}
	origDst = ap.String()
	if l := cfg.Listeners[origDst]; l != nil {
		return l, origDst
	}
	wild := netip.IPv4Unspecified()
	if ap.Addr().Is6() {
		wild = netip.IPv6Unspecified()
	}
	if l := cfg.Listeners[net.JoinHostPort(wild.String(), strconv.Itoa(int(ap.Port())))]; l != nil {
		return l, origDst
	}
	return lc, origDst
}

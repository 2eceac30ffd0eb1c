//go:build linux

package config

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// Socket options of netfilter's NAT: the destination a connection had
// before an iptables REDIRECT (or DNAT) rewrote it. SO_ORIGINAL_DST is
// <linux/netfilter_ipv4.h>'s, IP6T_SO_ORIGINAL_DST
// <linux/netfilter_ipv6/ip6_tables.h>'s; both are 80.
const (
	soOriginalDst     = 80
	ip6tSoOriginalDst = 80
)

// originalDst returns the destination a client dialled before netfilter
// redirected the connection to this proxy, as Envoy's original_dst
// listener filter reads it. ok is false when c is not a TCP connection or
// the kernel has no NAT record for it (the connection was not redirected:
// the answer is then the local address, which callers compare against).
func originalDst(c net.Conn) (ap netip.AddrPort, ok bool) {
	tc, isTCP := c.(*net.TCPConn)
	if !isTCP {
		return ap, false
	}
	local, isAddr := tc.LocalAddr().(*net.TCPAddr)
	if !isAddr {
		return ap, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return ap, false
	}
	v4 := local.IP.To4() != nil
	cerr := rc.Control(func(fd uintptr) {
		if v4 {
			var sa syscall.RawSockaddrInet4
			if getsockopt(fd, syscall.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)) != nil {
				return
			}
			port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
			ap, ok = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), true
			return
		}
		var sa syscall.RawSockaddrInet6
		if getsockopt(fd, syscall.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)) != nil {
			return
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		ap, ok = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	})
	if cerr != nil {
		return netip.AddrPort{}, false
	}
	return ap, ok
}

func getsockopt(fd uintptr, level, name int, val unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

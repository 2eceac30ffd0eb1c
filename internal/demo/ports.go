package demo

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// DefaultPortBase is the first port of the demo's default layout.
const DefaultPortBase = 15000

// Offsets of the demo's port layout from its base.
const (
	offAdmin      = 0   // the controller's admin API, /metrics and the web view
	offOutbound   = 1   // the frontend sidecar's outbound listener
	offXDS        = 10  // the controller's xDS server
	offInbound    = 101 // inbound listeners, one per sidecar
	offProxyAdmin = 201 // proxy admin ports (/ready, /metrics), one per sidecar
)

// layoutTries is how many bases, layoutStep apart, a layout search tries.
const (
	layoutTries = 20
	layoutStep  = 1000
)

// layoutPorts lists the ports of the layout at base with what each is for.
func layoutPorts(base int) map[int]string {
	ports := map[int]string{
		base + offAdmin:    "admin API",
		base + offOutbound: "frontend outbound listener",
		base + offXDS:      "xDS",
	}
	for i, s := range demoServices {
		ports[base+offInbound+i] = s.id + " inbound listener"
		ports[base+offProxyAdmin+i] = s.id + " admin"
	}
	return ports
}

// PortTakenError says that a port of a forced layout is in use.
type PortTakenError struct {
	// Addr is the address that could not be bound and Use what it is for.
	Addr, Use string
	// Err is the listen error.
	Err error
}

func (e *PortTakenError) Error() string {
	return fmt.Sprintf("port %s (%s) is not free: %v; pick another layout with --port-base, or leave --port-base out to find a free one", e.Addr, e.Use, e.Err)
}

func (e *PortTakenError) Unwrap() error { return e.Err }

// checkLayout reports the first port of the layout at base that cannot be
// bound on loopback.
func checkLayout(base int) error {
	if base <= 0 || base+offProxyAdmin+len(demoServices) > 65535 {
		return fmt.Errorf("port base %d: want 1-%d", base, 65535-offProxyAdmin-len(demoServices))
	}
	for p, use := range layoutPorts(base) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return &PortTakenError{Addr: addr, Use: use, Err: err}
		}
		_ = l.Close()
	}
	return nil
}

// findLayout returns base when its whole layout is free; unless fixed, it
// otherwise tries base+1000, base+2000, ... and returns the first free one.
// The ports are only probed: another program may still take one before the
// demo binds it, which the demo then reports as a failed start.
func findLayout(base int, fixed bool) (int, error) {
	err := checkLayout(base)
	if err == nil || fixed {
		return base, err
	}
	var taken *PortTakenError
	if !errors.As(err, &taken) {
		return 0, err
	}
	for i := 1; i < layoutTries; i++ {
		b := base + i*layoutStep
		if b+offProxyAdmin+len(demoServices) > 65535 {
			break
		}
		if checkLayout(b) == nil {
			return b, nil
		}
	}
	return 0, fmt.Errorf("no free port layout from %d on (%d tried, %d apart): %w", base, layoutTries, layoutStep, err)
}

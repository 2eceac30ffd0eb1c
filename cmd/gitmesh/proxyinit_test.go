package main

import "testing"

// TestProxyInitBadPorts: a port list that does not parse is refused (exit
// 2), not dropped, whatever the CIDR flags after it.
func TestProxyInitBadPorts(t *testing.T) {
	for _, flag := range []string{"--inbound-ports", "--exclude-inbound-ports", "--exclude-outbound-ports"} {
		if out, code := runCLI(t, "proxy-init", "--dry-run", flag, "80,x"); code != 2 {
			t.Errorf("%s 80,x: exit code %d; want 2\n%s", flag, code, out)
		}
	}
}

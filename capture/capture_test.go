package capture

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestRules compares generated rulesets with testdata/<name>.golden.
func TestRules(t *testing.T) {
	cidr := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		family Family
	}{
		{name: "default"},
		{name: "excludes", cfg: func(c *Config) {
			c.ExcludeInboundPorts = []uint16{22, 15020}
			c.ExcludeOutboundPorts = []uint16{5432}
			c.ExcludeOutboundCIDRs = []netip.Prefix{cidr("10.0.0.0/8"), cidr("fd00::/8")}
		}},
		{name: "includes", cfg: func(c *Config) {
			c.AllInbound, c.InboundPorts = false, []uint16{9080, 22}
			c.ExcludeInboundPorts = []uint16{22}
			c.AllOutbound, c.IncludeOutboundCIDRs = false, []netip.Prefix{cidr("10.96.0.0/12"), cidr("fd00::/8")}
		}},
		{name: "no inbound", cfg: func(c *Config) { c.AllInbound = false; c.ProxyUID = 2000 }},
		{name: "ipv6", family: IPv6, cfg: func(c *Config) {
			c.ExcludeOutboundCIDRs = []netip.Prefix{cidr("10.0.0.0/8"), cidr("fd00::1:0/112")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			got, err := Rules(c, tc.family)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("ruleset:\n%s\nwant (%s):\n%s", got, path, want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantN   int
		wantAll bool
		wantErr bool
	}{
		{in: "", wantN: 0},
		{in: "*", wantAll: true},
		{in: "10.0.0.0/8, 192.168.1.1", wantN: 2},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "nope", wantErr: true},
	} {
		t.Run("cidrs "+tc.in, func(t *testing.T) {
			got, all, err := ParseCIDRs(tc.in)
			if (err != nil) != tc.wantErr || len(got) != tc.wantN || all != tc.wantAll {
				t.Errorf("ParseCIDRs(%q) = %v, %v, %v", tc.in, got, all, err)
			}
		})
	}
	for _, tc := range []struct {
		in      string
		want    int
		wantErr bool
	}{{"", 0, false}, {"22, 15020", 2, false}, {"0", 0, true}, {"70000", 0, true}, {"ssh", 0, true}} {
		t.Run("ports "+tc.in, func(t *testing.T) {
			got, err := ParsePorts(tc.in)
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Errorf("ParsePorts(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
	if err := (Config{OutboundPort: 1}).Validate(); err == nil {
		t.Error("Validate without an inbound port: no error")
	}
}

// fakeIptables is a Runner holding the nat table's gitmesh chains and
// jumps; it records the commands that change them.
type fakeIptables struct {
	chains  map[string]bool // chain -> has rules
	jumps   map[string]int  // target -> jumps to it left
	changes []string
}

func (f *fakeIptables) Run(_ context.Context, _ string, _ string, args ...string) (string, error) {
	op, ch := args[3], args[len(args)-1]
	if op == "-n" {
		op = args[4]
	}
	switch op {
	case "-D":
		if f.jumps[ch] == 0 {
			return "", errors.New("no such rule")
		}
		f.jumps[ch]--
	case "-L":
		if _, ok := f.chains[ch]; !ok {
			return "", errors.New("no such chain")
		}
		return "", nil
	case "-F":
		f.chains[ch] = false
	case "-X":
		if f.chains[ch] {
			return "", errors.New("chain not empty")
		}
		delete(f.chains, ch)
	}
	f.changes = append(f.changes, op+" "+ch)
	return "", nil
}

// TestCleanup removes every jump, then flushes and deletes only the
// chains that exist, and a second run changes nothing.
func TestCleanup(t *testing.T) {
	f := &fakeIptables{
		chains: map[string]bool{ChainInbound: true, ChainOutput: true, ChainRedirect: true},
		jumps:  map[string]int{ChainInbound: 2, ChainOutput: 1},
	}
	if err := Cleanup(context.Background(), f, IPv4); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-D " + ChainInbound, "-D " + ChainInbound, "-D " + ChainOutput,
		"-F " + ChainInbound, "-F " + ChainOutput, "-F " + ChainRedirect,
		"-X " + ChainInbound, "-X " + ChainOutput, "-X " + ChainRedirect,
	}
	if !slices.Equal(f.changes, want) {
		t.Errorf("changes:\n got %q\nwant %q", f.changes, want)
	}
	if len(f.chains) != 0 {
		t.Errorf("chains left: %v", f.chains)
	}
	f.changes = nil
	if err := Cleanup(context.Background(), f, IPv4); err != nil {
		t.Fatal(err)
	}
	if len(f.changes) != 0 {
		t.Errorf("second cleanup changed %q", f.changes)
	}
}

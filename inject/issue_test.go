package inject

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestIssueAndRenew(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	hosts := []string{"gitmesh-injector.gitmesh-system.svc", "127.0.0.1"}
	first, err := issue(nil, hosts, now, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCerts(nil, CertConfig{Hosts: hosts, Generate: true})

	tests := []struct {
		name       string
		data       map[string][]byte
		at         time.Time
		hosts      []string
		wantReason string // "" when usable
	}{
		{name: "fresh", data: first, at: now},
		{name: "empty", data: map[string][]byte{}, at: now, wantReason: "empty"},
		{name: "two thirds of its life left", data: first, at: now.Add(120 * 24 * time.Hour)},
		{name: "less than a third left", data: first, at: now.Add(250 * 24 * time.Hour), wantReason: "due for renewal"},
		{name: "a new host", data: first, at: now, hosts: append(hosts, "gitmesh-injector.other.svc"), wantReason: "not valid for gitmesh-injector.other.svc"},
		{name: "no CA key", data: map[string][]byte{SecretKeyCert: first[SecretKeyCert], SecretKeyPrivKey: first[SecretKeyPrivKey], SecretKeyCA: first[SecretKeyCA]}, at: now, wantReason: "no CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.now = func() time.Time { return tt.at }
			c.cfg.Hosts = hosts
			if tt.hosts != nil {
				c.cfg.Hosts = tt.hosts
			}
			got := c.unusable(tt.data)
			if (tt.wantReason == "") != (got == "") || !strings.Contains(got, tt.wantReason) {
				t.Errorf("unusable = %q; want %q", got, tt.wantReason)
			}
		})
	}

	t.Run("renewal keeps the CA", func(t *testing.T) {
		later := now.Add(300 * 24 * time.Hour)
		renewed, err := issue(first, hosts, later, 365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(renewed[SecretKeyCA], first[SecretKeyCA]) {
			t.Error("renewal changed the CA: the caBundle would have to follow")
		}
		if bytes.Equal(renewed[SecretKeyCert], first[SecretKeyCert]) {
			t.Error("renewal kept the old certificate")
		}
		c.now = func() time.Time { return later }
		c.cfg.Hosts = hosts
		if r := c.unusable(renewed); r != "" {
			t.Errorf("renewed certificate unusable: %s", r)
		}
	})

	t.Run("a CA near its end is replaced", func(t *testing.T) {
		late := now.Add(caValidity - 100*24*time.Hour)
		renewed, err := issue(first, hosts, late, 365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(renewed[SecretKeyCA], first[SecretKeyCA]) {
			t.Error("a CA that ends before the leaf was kept")
		}
	})

	t.Run("no hosts", func(t *testing.T) {
		if _, err := issue(nil, nil, now, time.Hour); err == nil {
			t.Error("issue without hosts succeeded")
		}
	})
}

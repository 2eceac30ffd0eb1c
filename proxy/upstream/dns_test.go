package upstream_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/proxy/upstream"
)

func TestDNSResolverResolvesNames(t *testing.T) {
	c := &upstream.Cluster{Name: "c", DNSTargets: []upstream.DNSTarget{{Host: "localhost", Port: 8080, Weight: 1}}}
	r := upstream.StartDNSResolver(context.Background(), discardLogger(), net.DefaultResolver, c, time.Hour)
	defer r.Stop()
	set := r.Current.Load()
	found := false
	for _, e := range set.Endpoints {
		if e.Addr == "127.0.0.1:8080" || e.Addr == "[::1]:8080" {
			found = true
		}
	}
	if !found {
		t.Errorf("localhost resolved to %v", set.Endpoints)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

// errNoCluster: a cluster the configuration names does not exist.
var errNoCluster = errors.New("no such cluster")

var _ telemetry.Outcome = (*requestState)(nil)

// ResponseCode is the status sent downstream (telemetry.Outcome).
func (rs *requestState) ResponseCode() int { return rs.code }

// ResponseFlags are the request's Envoy response flags.
func (rs *requestState) ResponseFlags() metrics.ResponseFlags { return rs.flags }

// UpstreamCluster is the route's cluster; "" before one is chosen.
func (rs *requestState) UpstreamCluster() string {
	if rs.cluster == nil {
		return ""
	}
	return rs.cluster.Name
}

// UpstreamHost is the picked endpoint's address; "" for none.
func (rs *requestState) UpstreamHost() string {
	if rs.endpoint == nil {
		return ""
	}
	return rs.endpoint.Addr
}

// RouteName is the matched route's name; "" for none.
func (rs *requestState) RouteName() string {
	if rs.route == nil {
		return ""
	}
	return rs.route.Name
}

// dialCluster connects to an endpoint of the applied configuration's
// cluster name (a collector's), for the tracers' OTLP exporters.
func (p *Proxy) dialCluster(ctx context.Context, name string) (net.Conn, error) {
	cfg := p.current.Load()
	if cfg == nil {
		return nil, fmt.Errorf("dialing cluster %s: no configuration applied", name)
	}
	c := cfg.Clusters[name]
	if c == nil || c.Missing {
		return nil, fmt.Errorf("dialing cluster %s: %w", name, errNoCluster)
	}
	e := c.Pick(&upstream.PickRequest{})
	if e == nil {
		return nil, fmt.Errorf("dialing cluster %s: %w", name, errNoHealthyUpstream)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.Addr)
}

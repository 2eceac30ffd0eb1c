package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"

	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// rbacNetworkFilterName is Envoy's network (L4) RBAC filter, which Istio
// puts before tcp_proxy on TCP filter chains.
const rbacNetworkFilterName = "envoy.filters.network.rbac"

// networkRBAC is a built envoy.extensions.filters.network.rbac.v3.RBAC.
type networkRBAC struct {
	statPrefix string
	rules      *rbacFilter
}

// buildNetworkRBAC validates a network RBAC config: rules as the HTTP
// filter's, enforcement ONE_TIME_ON_FIRST_BYTE (the default; the decision
// is taken once per connection).
func buildNetworkRBAC(a *anypb.Any) (*networkRBAC, *fieldError) {
	cfg := &rbacnetv3.RBAC{}
	if err := a.UnmarshalTo(cfg); err != nil {
		return nil, fieldErr("", "decoding network RBAC: %w", err)
	}
	if err := checkFields(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix", "enforcement_type"); err != nil {
		return nil, &fieldError{err: err}
	}
	if cfg.GetEnforcementType() != rbacnetv3.RBAC_ONE_TIME_ON_FIRST_BYTE {
		return nil, fieldErr(".enforcement_type", "%s: %w", cfg.GetEnforcementType(), errUnsupported)
	}
	if cfg.GetStatPrefix() == "" {
		// Envoy's validation: stat_prefix is required.
		return nil, fieldErr(".stat_prefix", "empty")
	}
	rules, fe := buildRBACRules(cfg.GetRules())
	if fe != nil {
		fe.field = ".rules" + fe.field
		return nil, fe
	}
	return &networkRBAC{statPrefix: cfg.GetStatPrefix(), rules: rules}, nil
}

// allowConn runs a chain's network RBAC filters on a new connection and
// reports whether it may be proxied. A TLS connection is handshaken first
// (bounded by inspectTimeout), so that authenticated principals see the
// verified peer certificate. Matchers on HTTP attributes see a request
// without headers.
func (p *Proxy) allowConn(ctx context.Context, c net.Conn, filters []*networkRBAC, origDst string) bool {
	r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/"}, RemoteAddr: c.RemoteAddr().String()}
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, inspectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return false
		}
		st := tc.ConnectionState()
		r.TLS = &st
	}
	local := origDst
	if local == "" {
		local = c.LocalAddr().String()
	}
	r = r.WithContext(ctx)
	in := newAuthzInput(r, local, nil)
	for _, f := range filters {
		ok, _ := f.rules.allows(in)
		if f.rules.enforce && f.rules.action == rbacLog {
			continue
		}
		if !ok {
			p.metrics.auth.tcpDenied.WithLabelValues(f.statPrefix).Inc()
			p.log.Debug("rbac denied connection", "remote", r.RemoteAddr, "local", local)
			return false
		}
		if f.rules.enforce {
			p.metrics.auth.tcpAllowed.WithLabelValues(f.statPrefix).Inc()
		}
	}
	return true
}

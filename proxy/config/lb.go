package config

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"net/http"
	"strings"
)

// buildLB reads lb_policy and its *_lb_config and common_lb_config.
func buildLB(c *clusterv3.Cluster) (*upstream.LBConfig, *fieldError) {
	l := upstream.DefaultLB()
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		l.Kind = upstream.LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		l.Kind = upstream.LBLeastRequest
	case clusterv3.Cluster_RANDOM:
		l.Kind = upstream.LBRandom
	case clusterv3.Cluster_RING_HASH:
		l.Kind = upstream.LBRingHash
	case clusterv3.Cluster_MAGLEV:
		l.Kind = upstream.LBMaglev
	default:
		return nil, fieldErr("lb_policy", "%s: %w", c.GetLbPolicy(), ErrUnsupported)
	}

	switch cfg := c.GetLbConfig().(type) {
	case nil:
	case *clusterv3.Cluster_LeastRequestLbConfig_:
		if l.Kind != upstream.LBLeastRequest {
			break
		}
		if err := checkFields(cfg.LeastRequestLbConfig, "choice_count"); err != nil {
			return nil, fieldErr("least_request_lb_config", "%w", err)
		}
		if n := cfg.LeastRequestLbConfig.GetChoiceCount(); n != nil {
			if n.GetValue() < 2 {
				return nil, fieldErr("least_request_lb_config.choice_count", "%d: must be at least 2", n.GetValue())
			}
			l.ChoiceCount = int(n.GetValue())
		}
	case *clusterv3.Cluster_RingHashLbConfig_:
		if l.Kind != upstream.LBRingHash {
			break
		}
		rc := cfg.RingHashLbConfig
		if err := checkFields(rc, "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
			return nil, fieldErr("ring_hash_lb_config", "%w", err)
		}
		if v := rc.GetMinimumRingSize(); v != nil {
			l.MinRing = v.GetValue()
		}
		if v := rc.GetMaximumRingSize(); v != nil {
			l.MaxRing = v.GetValue()
		}
		if l.MinRing == 0 || l.MinRing > l.MaxRing || l.MaxRing > upstream.DefaultMaxRingSize {
			return nil, fieldErr("ring_hash_lb_config", "ring sizes %d-%d: need 1 <= minimum <= maximum <= %d", l.MinRing, l.MaxRing, upstream.DefaultMaxRingSize)
		}
	case *clusterv3.Cluster_MaglevLbConfig_:
		if l.Kind != upstream.LBMaglev {
			break
		}
		if err := checkFields(cfg.MaglevLbConfig, "table_size"); err != nil {
			return nil, fieldErr("maglev_lb_config", "%w", err)
		}
		if v := cfg.MaglevLbConfig.GetTableSize(); v != nil {
			if !isPrime(v.GetValue()) || v.GetValue() > 5000011 {
				return nil, fieldErr("maglev_lb_config.table_size", "%d: must be a prime up to 5000011", v.GetValue())
			}
			l.TableSize = v.GetValue()
		}
	case *clusterv3.Cluster_OriginalDstLbConfig_:

	default:
		return nil, fieldErr("lb_config", "%T: %w", cfg, ErrUnsupported)
	}
	if cl := c.GetCommonLbConfig(); cl != nil {

		if err := checkFields(cl, "healthy_panic_threshold", "locality_weighted_lb_config"); err != nil {
			return nil, fieldErr("common_lb_config", "%w", err)
		}
		if p := cl.GetHealthyPanicThreshold(); p != nil {
			v := p.GetValue()
			if v < 0 || v > 100 {
				return nil, fieldErr("common_lb_config.healthy_panic_threshold", "%g: must be 0-100", v)
			}
			l.PanicThreshold = &v
		}
	}
	return l, nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func buildHashPolicy(hp *routev3.RouteAction_HashPolicy) (upstream.HashPolicy, *fieldError) {
	p := upstream.HashPolicy{Terminal: hp.GetTerminal()}
	switch s := hp.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		if err := checkFields(s.Header, "header_name"); err != nil {
			return p, fieldErr(".header", "%w", err)
		}
		name := s.Header.GetHeaderName()
		if name == "" {
			return p, fieldErr(".header.header_name", "empty")
		}
		if !strings.HasPrefix(name, ":") {
			name = http.CanonicalHeaderKey(name)
		}
		p.Kind, p.Name = upstream.HashHeader, name
	case *routev3.RouteAction_HashPolicy_Cookie_:
		if err := checkFields(s.Cookie, "name", "ttl", "path"); err != nil {
			return p, fieldErr(".cookie", "%w", err)
		}
		if s.Cookie.GetName() == "" {
			return p, fieldErr(".cookie.name", "empty")
		}
		p.Kind, p.Name, p.Path = upstream.HashCookie, s.Cookie.GetName(), s.Cookie.GetPath()
		if t := s.Cookie.GetTtl(); t != nil {
			d := t.AsDuration()
			p.TTL = &d
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !s.ConnectionProperties.GetSourceIp() {

			p.Kind = upstream.HashNone
			break
		}
		p.Kind = upstream.HashSourceIP
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		if s.QueryParameter.GetName() == "" {
			return p, fieldErr(".query_parameter.name", "empty")
		}
		p.Kind, p.Name = upstream.HashQuery, s.QueryParameter.GetName()
	default:
		return p, fieldErr(".policy_specifier", "%T: %w", s, ErrUnsupported)
	}
	return p, nil
}

package config

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

func buildMirrorPolicy(mp *routev3.RouteAction_RequestMirrorPolicy, refs *clusterRefs, validate bool) (*routing.MirrorPolicy, *fieldError) {
	if err := checkFields(mp, "cluster", "runtime_fraction", "trace_sampled", "disable_shadow_host_suffix_append", "host_rewrite_literal"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	c, fe := refs.lookup(".cluster", mp.GetCluster(), validate)
	if fe != nil {
		return nil, fe
	}
	m := &routing.MirrorPolicy{Cluster: c, Share: upstream.Million, HostRewrite: mp.GetHostRewriteLiteral(), NoSuffix: mp.GetDisableShadowHostSuffixAppend()}
	if rf := mp.GetRuntimeFraction(); rf != nil {
		if err := checkFields(rf, "default_value", "runtime_key"); err != nil {
			return nil, fieldErr(".runtime_fraction", "%w", err)
		}
		f, err := buildFraction(rf.GetDefaultValue())
		if err != nil {
			return nil, fieldErr(".runtime_fraction.default_value", "%w", err)
		}
		m.Share = f
	}
	return m, nil
}

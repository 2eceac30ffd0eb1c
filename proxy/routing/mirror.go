package routing

import (
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"net"
)

// MirrorPolicy is a built RequestMirrorPolicy.
type MirrorPolicy struct {
	// Cluster receives copies of Share of requests; HostRewrite, when
	// set, replaces their Host (else ShadowHost's, unless NoSuffix).
	Cluster     *upstream.Cluster
	Share       upstream.Fraction
	HostRewrite string
	// NoSuffix is disable_shadow_host_suffix_append.
	NoSuffix bool
}

// ShadowHost appends "-shadow" to the host part of an authority, as Envoy
// names shadow requests ("reviews:9080" becomes "reviews-shadow:9080").
func ShadowHost(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h+"-shadow", port)
	}
	return host + "-shadow"
}

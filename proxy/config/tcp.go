package config

import (
	"fmt"
	"time"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/anypb"
)

// TCPProxy is a built envoy.filters.network.tcp_proxy.
type TCPProxy struct {
	statPrefix string
	// Clusters are cluster or weighted_clusters; TotalWeight their sum.
	Clusters    []routing.WeightedCluster
	TotalWeight uint32
	// IdleTimeout closes a connection without traffic in either direction
	// for that long (Envoy's default 1h); 0 disables it.
	IdleTimeout time.Duration
	// MaxConnectAttempts is max_connect_attempts (default 1);
	// HashSourceIP is a hash_policy on the source IP.
	MaxConnectAttempts int
	HashSourceIP       bool
	// TLS is the filter chain's downstream TLS context (nil: plaintext),
	// for the principal labels.
	TLS *mtls.TLSContext
}

const defaultTCPIdleTimeout = time.Hour

// buildTCPProxy validates a TcpProxy. A cluster it names that CDS has not
// delivered resolves through refs to a placeholder, as Envoy only finds out
// at connection time.
func buildTCPProxy(a *anypb.Any, refs *clusterRefs) (*TCPProxy, *fieldError) {
	tp := &tcpproxyv3.TcpProxy{}
	if err := a.UnmarshalTo(tp); err != nil {
		return nil, fieldErr("", "decoding TcpProxy: %w", err)
	}
	if err := checkFields(tp, "stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts", "hash_policy"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	out := &TCPProxy{statPrefix: tp.GetStatPrefix(), IdleTimeout: defaultTCPIdleTimeout, MaxConnectAttempts: 1}
	if d := tp.GetIdleTimeout(); d != nil {
		out.IdleTimeout = d.AsDuration()
	}
	if n := tp.GetMaxConnectAttempts(); n != nil {
		if n.GetValue() < 1 {
			return nil, fieldErr(".max_connect_attempts", "must be at least 1")
		}
		out.MaxConnectAttempts = int(n.GetValue())
	}
	for i, hp := range tp.GetHashPolicy() {
		if hp.GetSourceIp() == nil {
			return nil, fieldErr(fmt.Sprintf(".hash_policy[%d]", i), "only source_ip: %w", ErrUnsupported)
		}
		out.HashSourceIP = true
	}
	lookup := func(field, name string) (*upstream.Cluster, *fieldError) {
		return refs.lookup(field, name, false)
	}
	switch cs := tp.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		c, fe := lookup(".cluster", cs.Cluster)
		if fe != nil {
			return nil, fe
		}
		out.Clusters, out.TotalWeight = []routing.WeightedCluster{{Cluster: c, Upto: 1}}, 1
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for i, w := range cs.WeightedClusters.GetClusters() {
			field := fmt.Sprintf(".weighted_clusters.clusters[%d]", i)
			if err := checkFields(w, "name", "weight"); err != nil {
				return nil, fieldErr(field, "%w", err)
			}
			c, fe := lookup(field+".name", w.GetName())
			if fe != nil {
				return nil, fe
			}
			if w.GetWeight() == 0 {
				continue
			}
			out.TotalWeight += w.GetWeight()
			out.Clusters = append(out.Clusters, routing.WeightedCluster{Cluster: c, Upto: out.TotalWeight})
		}
		if out.TotalWeight == 0 {
			return nil, fieldErr(".weighted_clusters", "weights sum to 0")
		}
	default:
		return nil, fieldErr(".cluster_specifier", "missing cluster or weighted_clusters")
	}
	return out, nil
}

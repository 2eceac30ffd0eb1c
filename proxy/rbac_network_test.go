package proxy

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

// TestNetworkRBAC puts Istio's envoy.filters.network.rbac before a
// tcp_proxy: a denied connection is closed before any byte reaches the
// backend.
func TestNetworkRBAC(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	const cA = "outbound|5000||a.default.svc.cluster.local"
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	port := func(addr string) uint32 {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return uint32(n)
	}
	tests := []struct {
		name  string
		rules *rbacconfigv3.RBAC
		want  string
	}{
		{"allow by destination port", &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pOr(pPort(port(addrs[0]))))}, idAnd(idAny())),
		}}, "a:ping"},
		{"deny loopback clients", &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_DENY, Policies: map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idIP("127.0.0.0", 8)))),
		}}, ""},
		{"allow needs a principal: plaintext has none", &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{
			"p": policy([]*rbacconfigv3.Permission{pAnd(pAny())}, idAnd(idOr(idPrincipal("spiffe://cluster.local/ns/default/sa/sleep")))),
		}}, ""},
	}
	res := []types.Resource{staticCluster(t, cA, "a.default.svc.cluster.local", []string{tcpEcho(t, "a")})}
	for i, tt := range tests {
		l := tcpListener(t, fmt.Sprint("tcp", i), addrs[i], &tcpproxyv3.TcpProxy{StatPrefix: "a", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cA}})
		fc := l.FilterChains[0]
		fc.Filters = append([]*listenerv3.Filter{{
			Name:       config.RBACNetworkFilterName,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &rbacnetv3.RBAC{StatPrefix: "tcp.", Rules: tt.rules})},
		}}, fc.Filters...)
		res = append(res, l)
	}
	r.push(res...)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tcpExchange(t, addrs[i]); got != tt.want {
				t.Errorf("read %q; want %q", got, tt.want)
			}
		})
	}
	if got := r.metricLines("envoy_rbac_denied", `stat_prefix="tcp."`); len(got) != 1 || !contains(got[0], " 2") {
		t.Errorf("envoy_rbac_denied = %q; want 2", got)
	}
}

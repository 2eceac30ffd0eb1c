package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// tcpEcho is a TCP server that answers "<name>:" and echoes what it reads
// until the client half-closes.
func tcpEcho(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+":")
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func tcpListener(t testing.TB, name, addr string, tp *tcpproxyv3.TcpProxy) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddr(t, addr),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, tp)},
		}}}},
	}
}

func TestTCPProxy(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	const (
		cA    = "outbound|5000||a.default.svc.cluster.local"
		cB    = "outbound|5000||b.default.svc.cluster.local"
		cDead = "outbound|5000||dead.default.svc.cluster.local"
	)
	tests := []struct {
		name     string
		proxy    *tcpproxyv3.TcpProxy
		want     string // "" for a refused connection
		wantFlag string
	}{
		{name: "cluster", proxy: &tcpproxyv3.TcpProxy{StatPrefix: "a", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cA}}, want: "a:ping", wantFlag: "-"},
		{name: "weighted clusters", proxy: &tcpproxyv3.TcpProxy{StatPrefix: "w", ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{
			WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{
				{Name: cA, Weight: 0}, {Name: cB, Weight: 100},
			}},
		}}, want: "b:ping"},
		{name: "no reachable endpoint", proxy: &tcpproxyv3.TcpProxy{StatPrefix: "d", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cDead}}, want: "", wantFlag: "UF"},
	}
	res := []types.Resource{
		staticCluster(t, cA, "a.default.svc.cluster.local", []string{tcpEcho(t, "a")}),
		staticCluster(t, cB, "b.default.svc.cluster.local", []string{tcpEcho(t, "b")}),
		staticCluster(t, cDead, "dead.default.svc.cluster.local", []string{freeAddr(t)}),
	}
	addrs := make([]string, len(tests))
	for i, tt := range tests {
		addrs[i] = freeAddr(t)
		res = append(res, tcpListener(t, fmt.Sprint("tcp", i), addrs[i], tt.proxy))
	}
	r.push(res...)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addrs[i])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "ping")
			c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			if string(got) != tt.want {
				t.Errorf("read %q; want %q", got, tt.want)
			}
		})
	}
	eventually(t, 5*time.Second, func() error {
		m := r.metrics()
		for _, want := range []string{
			`istio_tcp_connections_opened_total{`, `istio_tcp_received_bytes_total{`, `istio_tcp_sent_bytes_total{`,
			`destination_service="a.default.svc.cluster.local"`, `request_protocol="tcp"`, `response_flags="UF"`,
		} {
			if !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
	if lines := r.metricLines("istio_tcp_received_bytes_total", `destination_service="a.default.svc.cluster.local"`); len(lines) == 0 || !strings.HasSuffix(lines[0], " 4") {
		t.Errorf("received bytes for a: %v; want 4", lines)
	}
}

package compiler

import (
	"fmt"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

type (
	listenerT                 = listenerv3.Listener
	listenerFilterTypedConfig = listenerv3.Filter_TypedConfig
)

// TestCheck feeds check hand-broken resources: each must be caught.
func TestCheck(t *testing.T) {
	valid := func(t *testing.T) *resources {
		l, err := httpListener(outboundName, "127.0.0.1:15001", corev3.TrafficDirection_OUTBOUND)
		if err != nil {
			t.Fatal(err)
		}
		s := &service{fqdn: "a.default.svc.cluster.local", name: "a", namespace: "default", local: true}
		pt := servicePort{number: 80, protocol: protoHTTP}
		c, cla, err := outboundCluster(s, pt, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		rc := &routev3.RouteConfiguration{Name: outboundName, VirtualHosts: []*routev3.VirtualHost{{
			Name: "a", Domains: []string{"a"},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterAction(c.GetName())}},
		}}}
		return &resources{
			listeners: []*listenerT{l}, routes: []*routev3.RouteConfiguration{rc},
			clusters: []*clusterv3.Cluster{c}, endpoints: []*endpointv3.ClusterLoadAssignment{cla},
			anyTypes: &anyTypes{},
		}
	}
	tests := []struct {
		name   string
		mutate func(r *resources)
		want   string
	}{
		{"valid", func(r *resources) {}, ""},
		{"empty stat prefix inside Any", func(r *resources) {
			hcm := &hcmv3.HttpConnectionManager{}
			f := r.listeners[0].GetFilterChains()[0].GetFilters()[0]
			_ = f.GetTypedConfig().UnmarshalTo(hcm)
			hcm.StatPrefix = ""
			a, _ := marshalAny(hcm)
			f.ConfigType.(*listenerFilterTypedConfig).TypedConfig = a
		}, "StatPrefix"},
		{"missing route configuration", func(r *resources) { r.routes[0].Name = "other" }, "route configuration outbound does not exist"},
		{"missing cluster", func(r *resources) {
			r.clusters[0].Name = "x"
			r.clusters[0].EdsClusterConfig.ServiceName = "x"
			r.endpoints[0].ClusterName = "x"
		}, "cluster outbound|80||a.default.svc.cluster.local does not exist"},
		{"missing assignment", func(r *resources) { r.endpoints = nil }, "cluster load assignment"},
		{"duplicate domain", func(r *resources) {
			vh := r.routes[0].VirtualHosts[0]
			r.routes[0].VirtualHosts = append(r.routes[0].VirtualHosts, &routev3.VirtualHost{Name: "b", Domains: vh.Domains, Routes: vh.Routes})
		}, "domain \"a\""},
		{"invalid cluster", func(r *resources) { r.clusters[0].ConnectTimeout.Seconds = -1 }, "ConnectTimeout"},
		{"unknown type in an Any inside a map", func(r *resources) {
			r.clusters[0].TypedExtensionProtocolOptions = map[string]*anyMessage{"x": {TypeUrl: "type.googleapis.com/nope.Nope"}}
		}, "unpacking type.googleapis.com/nope.Nope"},
		{"first invalid of many, validated in parallel", func(r *resources) {
			for i := range 3 * parallelMin {
				c := proto.Clone(r.clusters[0]).(*clusterv3.Cluster)
				c.Name = fmt.Sprintf("c%03d", i)
				c.EdsClusterConfig.ServiceName = c.Name
				if i == 100 || i == 150 {
					c.ConnectTimeout.Seconds = -1
				}
				cla := proto.Clone(r.endpoints[0]).(*endpointv3.ClusterLoadAssignment)
				cla.ClusterName = c.Name
				r.clusters = append(r.clusters, c)
				r.endpoints = append(r.endpoints, cla)
			}
		}, "invalid cluster c100:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid(t)
			tt.mutate(r)
			err := r.check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

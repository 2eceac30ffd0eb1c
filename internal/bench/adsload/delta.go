package adsload

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// delta runs one incremental ADS stream until it fails or ctx is done:
// LDS and CDS wildcard, RDS and EDS subscribed and unsubscribed by name as
// listeners and clusters come and go.
func (p *proxy) delta(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("opening the delta ADS stream: %w", err)
	}
	node := p.node.(*corev3.Node)
	// Wildcard types keep what they hold to find the names they reference.
	held := map[string]map[string]*anypb.Any{typeListeners: {}, typeClusters: {}}
	subs := map[string][]string{}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typeListeners}); err != nil {
		return fmt.Errorf("subscribing to listeners: %w", err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeClusters}); err != nil {
		return fmt.Errorf("subscribing to clusters: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receiving: %w", err)
		}
		p.received(proto.Size(resp))
		typ := resp.GetTypeUrl()
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return fmt.Errorf("acking %s: %w", typ, err)
		}
		if h, ok := held[typ]; ok {
			for _, r := range resp.GetResources() {
				h[r.GetName()] = r.GetResource()
			}
			for _, n := range resp.GetRemovedResources() {
				delete(h, n)
			}
			dep := typeRoutes
			if typ == typeClusters {
				dep = typeEndpoints
			}
			var lists [][]string
			for _, r := range h {
				lists = append(lists, p.f.names.refs(typ, r))
			}
			names := nameSet(lists...)
			if added, removed := diff(subs[dep], names); len(added)+len(removed) > 0 {
				subs[dep] = names
				if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
					TypeUrl: dep, ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: removed,
				}); err != nil {
					return fmt.Errorf("subscribing to %s: %w", dep, err)
				}
			}
		}
		p.acked(typ, resp.GetNonce(), len(resp.GetResources()) > 0, p.wantSotW(subs[typeRoutes], subs[typeEndpoints]))
	}
}

package adsload

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// sotw runs one state-of-the-world ADS stream until it fails or ctx is
// done: LDS and CDS wildcard, RDS and EDS by the names they reference.
func (p *proxy) sotw(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("opening the ADS stream: %w", err)
	}
	node := p.node.(*corev3.Node)
	type sub struct {
		names          []string
		version, nonce string
	}
	subs := map[string]*sub{typeListeners: {}, typeClusters: {}, typeRoutes: {}, typeEndpoints: {}}
	send := func(typ string, first bool) error {
		s := subs[typ]
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: s.names}
		if first {
			req.Node = node
		}
		return stream.Send(req)
	}
	if err := send(typeListeners, true); err != nil {
		return fmt.Errorf("subscribing to listeners: %w", err)
	}
	if err := send(typeClusters, false); err != nil {
		return fmt.Errorf("subscribing to clusters: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receiving: %w", err)
		}
		p.received(proto.Size(resp))
		typ := resp.GetTypeUrl()
		s, ok := subs[typ]
		if !ok {
			continue
		}
		s.version, s.nonce = resp.GetVersionInfo(), resp.GetNonce()
		if err := send(typ, false); err != nil { // ACK
			return fmt.Errorf("acking %s: %w", typ, err)
		}
		// A listener or cluster update may reference other routes or
		// endpoints: subscribe to exactly those.
		var dep string
		switch typ {
		case typeListeners:
			dep = typeRoutes
		case typeClusters:
			dep = typeEndpoints
		}
		if dep != "" {
			var lists [][]string
			for _, r := range resp.GetResources() {
				lists = append(lists, p.f.names.refs(typ, r))
			}
			if names := nameSet(lists...); !equal(names, subs[dep].names) {
				subs[dep].names = names
				if err := send(dep, false); err != nil {
					return fmt.Errorf("subscribing to %s: %w", dep, err)
				}
			}
		}
		p.acked(typ, s.version, true, p.wantSotW(subs[typeRoutes].names, subs[typeEndpoints].names))
	}
}

// wantSotW returns the types a proxy must have ACKed to be ready.
func (p *proxy) wantSotW(routes, endpoints []string) []string {
	want := []string{typeListeners, typeClusters}
	if len(routes) > 0 {
		want = append(want, typeRoutes)
	}
	if len(endpoints) > 0 {
		want = append(want, typeEndpoints)
	}
	return want
}

package compiler

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// ErrNilPolicy is returned by Compile on a nil Policy.
var ErrNilPolicy = errors.New("compiling: nil policy")

// builder holds what one Compile call reads.
type builder struct {
	p         *Policy
	class     nodemeta.ProxyClass
	namespace string // class namespace, defaulted
	fleet     []nodemeta.Workload
	scope     *sidecarScope // the Sidecar that applies to a sidecar class; nil when none
	// shared are the resources taken from or put in the Cache, which
	// other snapshots share (see outboundClusters).
	shared map[proto.Message]bool
	// vhosts are the outbound VirtualHosts taken from or to be put in
	// the Cache, by their key (see cachedServiceVhost).
	vhosts map[*routev3.VirtualHost]pendingVhost
	err    error // the first error of a helper that cannot return one
}

// fail records the first error of a translation step that has no error
// result; Compile returns it.
func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// any packs m (see marshalAny), recording a failure.
func (b *builder) any(m proto.Message) *anypb.Any {
	a, err := marshalAny(m)
	if err != nil {
		b.fail(err)
	}
	return a
}

// resources is one ProxyClass's xDS resources, each list in build order.
type resources struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment

	// cache is the Policy's (nil when none); wire holds the deterministic
	// encoding of each resource check validated, for snapshot;
	// shared are the resources the Cache keeps (their encodings too).
	cache  *Cache
	wire   map[proto.Message][]byte
	shared map[proto.Message]bool
	// vhosts are the builder's (see routeConfigWire).
	vhosts map[*routev3.VirtualHost]pendingVhost
	// anyTypes lets validation skip sub-messages that cannot hold an Any.
	anyTypes *anyTypes
}

// Compile translates p into the xDS resources of one ProxyClass, following
// docs/xds-conventions.md. fleet is every connected workload; sidecars
// whose labels match a ServiceEntry's workloadSelector become endpoints of
// that service.
//
// A sidecar gets the outbound listener and RouteConfiguration (when
// class.Outbound is set), the inbound ones (when class.Inbound and
// class.App are set), one TCP proxy listener per TCP service port it sees
// (on the outbound address's IP), and, as Istio's SidecarScope, the
// clusters and endpoints of the services it sees (exportTo and its
// Sidecar's egress hosts, see scope.go) plus those its routes and TCP
// listeners reference, its inbound cluster and, in capture mode, the
// Passthrough and BlackHole clusters (see scopedClusters). A proxyless
// gRPC client (GENERATOR=grpc) gets API listeners named as it dials, their
// RouteConfigurations, and EDS clusters and endpoints of every service
// (see grpc.go). A gateway gets a listener per Gateway server port it has
// an address for, with the VirtualServices bound to those Gateways (see
// gateway.go), and every cluster and endpoint.
//
// Every resource passes go-control-plane's ValidateAll (including typed
// configs inside Any) and every reference resolves; otherwise Compile
// returns an error, which is a compiler bug or a gap in validation. Compile
// is deterministic: equal input compiles to equal bytes and versions. A
// Policy whose Diagnostics have errors compiles best-effort (invalid routes
// are left out) and must not be deployed.
func (p *Policy) Compile(class nodemeta.ProxyClass, fleet []nodemeta.Workload) (*Snapshot, error) {
	if p == nil {
		return nil, ErrNilPolicy
	}
	b := &builder{p: p, class: class, namespace: class.Namespace, fleet: fleet}
	if b.namespace == "" {
		b.namespace = nodemeta.DefaultNamespace
	}
	res := resources{cache: p.cache, anyTypes: &anyTypes{}}
	groups, err := b.outboundClusters()
	if err != nil {
		return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
	}

	switch {
	case class.Role != "" && class.Role != nodemeta.RoleSidecar && class.Role != nodemeta.RoleGateway:
		return nil, fmt.Errorf("compiling for %s: unknown role %q", class.Key(), class.Role)
	case class.Generator == nodemeta.GeneratorGRPC:
		res.clusters, res.endpoints = b.scopedClusters(&res, groups)
		if err := b.grpcClient(&res); err != nil {
			return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
		}
	case class.Role == nodemeta.RoleGateway:
		res.clusters, res.endpoints = b.scopedClusters(&res, groups)
		if err := b.gatewayListeners(&res); err != nil {
			return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
		}
		if err := b.applyTelemetry(&res); err != nil {
			return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
		}
	default:
		if err := b.sidecar(&res); err != nil {
			return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
		}
		if err := b.applyTelemetry(&res); err != nil {
			return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
		}
		// Scoped once the routes and listeners are known, which may
		// reference services outside the scope; the service clusters come
		// first, as for the other roles.
		clusters, clas := b.scopedClusters(&res, groups)
		res.clusters = append(clusters, res.clusters...)
		res.endpoints = append(clas, res.endpoints...)
	}
	if err := b.applySecurity(&res); err != nil {
		return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
	}
	if b.err != nil {
		return nil, fmt.Errorf("compiling for %s: %w", class.Key(), b.err)
	}
	res.shared, res.vhosts = b.shared, b.vhosts
	if err := res.check(); err != nil {
		return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
	}
	snap, version, err := res.snapshot()
	if err != nil {
		return nil, fmt.Errorf("compiling for %s: %w", class.Key(), err)
	}
	return &Snapshot{Class: class, Version: version, Resources: snap}, nil
}

// sidecar adds a sidecar's listeners, routes and inbound cluster.
func (b *builder) sidecar(res *resources) error {
	b.scope = b.p.sidecarFor(b.namespace, b.class.Labels)
	if b.class.Outbound != "" {
		l, err := httpListener(outboundName, b.class.Outbound, corev3.TrafficDirection_OUTBOUND)
		if err != nil {
			return err
		}
		res.listeners = append(res.listeners, l)
		res.routes = append(res.routes, b.outboundRoutes())
		tcp, err := b.tcpListeners()
		if err != nil {
			return err
		}
		res.listeners = append(res.listeners, tcp...)
		if b.capturing() {
			if err := b.captureOutbound(l); err != nil {
				return err
			}
			vips, err := b.vipListeners()
			if err != nil {
				return err
			}
			res.listeners = append(res.listeners, vips...)
			res.clusters = append(res.clusters, captureClusters()...)
		}
	}
	if b.class.Inbound != "" && b.class.App != "" {
		app, err := splitIPPort(b.class.App)
		if err != nil {
			return fmt.Errorf("building inbound cluster: %w", err)
		}
		l, err := httpListener(inboundName, b.class.Inbound, corev3.TrafficDirection_INBOUND)
		if err != nil {
			return err
		}
		if err := b.secureInbound(l, app.Port); err != nil {
			return err
		}
		name := inboundClusterName(app.Port)
		res.listeners = append(res.listeners, l)
		res.routes = append(res.routes, inboundRoutes(name))
		res.clusters = append(res.clusters, inboundCluster(name, app.Host, app.Port))
	}
	return nil
}
